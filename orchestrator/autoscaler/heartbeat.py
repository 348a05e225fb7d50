"""The autoscaler's liveness: a heartbeat file written after every round, and the probe that reads it.

The autoscaler serves no port, so the kubelet cannot ask it anything; it can run a command in its
container. The loop writes ``{"time": ..., "max_age_seconds": ..., "round": ...}`` after every round,
whether the round succeeded, failed (an API or Redis outage: restarting would not help) or stood by as
a follower. Only a loop that stopped going round, a hang that the per-call timeouts did not catch,
lets the file age past ``max_age_seconds``, and then ``python -m orchestrator.autoscaler.heartbeat FILE``
exits 1 and the kubelet restarts the container. The writer states the bound, so the probe and the
loop cannot disagree about it.

This module imports nothing heavy: the probe runs every few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path


class Heartbeat:
    def __init__(self, path: Path, max_age_seconds: float, wall_clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.max_age_seconds = max_age_seconds
        self._wall = wall_clock

    def beat(self, round_result: str) -> None:
        """Replaces the file atomically, so the probe never reads half a heartbeat."""
        record = {"time": self._wall(), "max_age_seconds": self.max_age_seconds, "round": round_result}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps(record))
        os.replace(partial, self.path)


def problem(path: Path, now: float) -> str | None:
    """None when the heartbeat is fresh, else why the probe fails."""
    try:
        record = json.loads(path.read_text())
        age = now - float(record["time"])
        max_age = float(record["max_age_seconds"])
    except FileNotFoundError:
        return f"no heartbeat at {path}: the autoscaler has not started its loop"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable heartbeat {path}: {exc}"
    if age > max_age:
        return (
            f"last round ended {age:.0f} s ago (bound {max_age:.0f} s, last: {record.get('round')}): the loop is stuck"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="exit 0 while the autoscaler's heartbeat is fresh (liveness probe)")
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    reason = problem(args.file, time.time())
    if reason:
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
