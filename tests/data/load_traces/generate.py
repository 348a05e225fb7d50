"""Writes the load traces in this folder (seeded, so re-running reproduces them byte for byte).

The traces are synthetic, shaped like the orchestrator's session log of one pool: a session starts when
a client opens Converse and ends when it closes; the concurrency follows the curve named in each header.
Which session ends is random (seeded) except for the "lingering" ones, which stay until late.
Run: .venv/bin/python tests/data/load_traces/generate.py
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent


def write(name: str, description: str, duration: int, curve: Callable[[float], float], lingering: int = 0) -> None:
    rng = random.Random(name)
    active: list[str] = []
    sticky: set[str] = set()
    rows: list[dict[str, object]] = []
    serial = 0
    for second in range(duration):
        target = max(0, round(curve(second) + rng.gauss(0, 0.4)))
        while len(active) < target:
            serial += 1
            session = f"sess-{serial:05d}"
            active.append(session)
            if len(sticky) < lingering and second == 0:
                sticky.add(session)
            rows.append({"t": round(second + rng.random(), 3), "kind": "start", "session": session})
        while len(active) > target and len(active) > len(sticky & set(active)):
            session = rng.choice([s for s in active if s not in sticky])
            active.remove(session)
            rows.append({"t": round(second + rng.random(), 3), "kind": "end", "session": session})
        if lingering and second == duration * 5 // 6:
            for session in sorted(sticky):
                active.remove(session)
                rows.append({"t": round(second + rng.random(), 3), "kind": "end", "session": session})
            sticky.clear()
    rows.sort(key=lambda row: (row["t"], row["kind"] != "end"))
    header = {"kind": "header", "pool": "all", "interval_seconds": 15, "duration_seconds": duration}
    header["description"] = description
    lines = [json.dumps(header)] + [json.dumps(row) for row in rows]
    (HERE / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def burst(t: float) -> float:
    if t < 300:
        return 5
    if t < 330:
        return 5 + 40 * (t - 300) / 30
    if t < 900:
        return 45
    if t < 960:
        return 45 - 37 * (t - 900) / 60
    return 8


def main() -> None:
    write("burst", "5 sessions, a burst to 45 within 30 s at t=300 s held 10 min, back to 8", 1800, burst)
    write(
        "oscillation",
        "between 8 and 28 sessions, period 4 min (shorter than the 5 min scale-down window)",
        1800,
        lambda t: 18 + 10 * math.sin(2 * math.pi * t / 240),
    )
    write(
        "slow_decline",
        "60 sessions declining to 0 over 40 min; 6 sessions from the start linger until t=3000 s",
        3600,
        lambda t: max(0.0, 60 * (1 - t / 2400)),
        lingering=6,
    )


if __name__ == "__main__":
    main()
