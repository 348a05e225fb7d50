"""Print the turns of an orchestrator trace file as waterfalls: where did the time of each turn go?

``python -m perf.trace_view out/perf/load/traces.jsonl --last 2`` (any ``minmo serve --trace-file``
output). Each assistant turn is one trace; its spans are listed by start time, with their offset
from the respond decision and their duration, and a bar on a 10 ms grid, so "decision -> first
audio" reads top to bottom without a trace viewer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from perf.spans import read_spans

GRID_MS = 10.0
BAR_WIDTH = 60


def waterfall(root: dict[str, Any], children: list[dict[str, Any]]) -> list[str]:
    """The turn's spans as text lines; offsets from the respond decision (the listen span's end)."""
    listen = next((s for s in children if s["name"] == "listen"), None)
    origin = listen["end_ns"] if listen else root["start_ns"]
    attrs = root["attributes"]
    lines = [
        f"turn {attrs.get('minmo.turn.sequence')} of session {attrs.get('minmo.session.id')} "
        f"(trace {root['trace_id']}): {attrs.get('minmo.turn.text_tokens', '?')} text tokens, "
        f"{attrs.get('minmo.turn.audio_ms', '?')} ms played, interrupted={attrs.get('minmo.turn.interrupted')}"
    ]
    for span in sorted(children, key=lambda s: s["start_ns"]):
        offset = (span["start_ns"] - origin) / 1e6
        duration = (span["end_ns"] - span["start_ns"]) / 1e6
        if span["name"] == "listen":
            extra = ", ".join(f"{k} {v:.0f} ms" for k, v in span["attributes"].items() if k.endswith("_ms"))
            lines.append(f"  {'listen (user turn)':<26} {offset:>9.0f} ms {duration:>8.0f} ms   {extra}")
            continue
        start = min(BAR_WIDTH, max(0, int(offset / GRID_MS)))
        bar = " " * start + "#" * max(1, min(BAR_WIDTH - start, round(duration / GRID_MS)))
        lines.append(f"  {span['name']:<26} {offset:>+9.0f} ms {duration:>8.1f} ms  |{bar}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace_file", type=Path)
    parser.add_argument("--last", type=int, default=3, help="how many of the latest turns to show")
    parser.add_argument("--session", help="only this session's turns")
    args = parser.parse_args(argv)
    spans = read_spans(args.trace_file)
    roots = [s for s in spans if s["name"] == "turn"]
    if args.session:
        roots = [r for r in roots if r["attributes"].get("minmo.session.id") == args.session]
    if not roots:
        print(f"no turns in {args.trace_file}", file=sys.stderr)
        return 1
    for root in sorted(roots, key=lambda r: r["start_ns"])[-args.last :]:
        children = [s for s in spans if s["trace_id"] == root["trace_id"] and s is not root]
        print("\n".join(waterfall(root, children)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
