"""The fault table: per fault, how often it was injected, how many sessions survived, turns lost/duplicated.

Each test records its injection before it asserts, so a failing run still counts what it saw. The
table is written to ``out/faults/`` (JSON and Markdown) and printed at the end of the run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class FaultRow:
    fault: str
    injected: int = 0
    sessions_survived: int = 0
    turns_lost: int = 0
    turns_duplicated: int = 0


class FaultTable:
    def __init__(self) -> None:
        self.rows: dict[str, FaultRow] = {}
        self.notes: dict[str, list[str]] = {}

    def record(self, fault: str, *, survived: bool, lost: int, duplicated: int, note: str = "") -> None:
        row = self.rows.setdefault(fault, FaultRow(fault))
        row.injected += 1
        row.sessions_survived += int(survived)
        row.turns_lost += lost
        row.turns_duplicated += duplicated
        if note and note not in self.notes.setdefault(fault, []):
            self.notes[fault].append(note)

    def markdown(self) -> str:
        lines = [
            "| fault | injected | sessions survived | turns lost | turns duplicated |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in self.rows.values():
            cells = (row.fault, row.injected, row.sessions_survived, row.turns_lost, row.turns_duplicated)
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        notes = [f"- {fault}: {note}" for fault, items in self.notes.items() for note in items]
        return "\n".join(lines + (["", *notes] if notes else [])) + "\n"

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        rows = [asdict(row) for row in self.rows.values()]
        (folder / "faults.json").write_text(json.dumps({"rows": rows, "notes": self.notes}, indent=2) + "\n")
        (folder / "faults.md").write_text(self.markdown())
