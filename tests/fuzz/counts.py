"""How many cases each fuzz suite ran, kept for the closing note in ``out/fuzz/counts.json``.

Hypothesis reports no totals of its own; each property counts its calls here (shrinking included),
and the fuzz conftest writes the tallies when the test session ends, merged into what earlier runs
(and `make fuzz`'s atheris harnesses) recorded under other names.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tests.conftest import REPO_ROOT

COUNTS_FILE = REPO_ROOT / "out" / "fuzz" / "counts.json"

_ran: Counter[str] = Counter()


def count(suite: str, cases: int = 1) -> None:
    _ran[suite] += cases


def tallies() -> dict[str, int]:
    """This session's counts so far."""
    return dict(_ran)


def record(path: Path = COUNTS_FILE, tallies: dict[str, int] | None = None) -> dict[str, int]:
    """Merge ``tallies`` (this session's counts by default) into ``path``; returns the merged counts."""
    new = dict(_ran) if tallies is None else tallies
    if not new:
        return {}
    path.parent.mkdir(parents=True, exist_ok=True)
    merged: dict[str, int] = json.loads(path.read_text()) if path.is_file() else {}
    merged.update(new)
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return merged
