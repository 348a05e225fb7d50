"""A Triton pool pod's preStop hook: keep serving until the turns in flight are over, then let SIGTERM come.

When Kubernetes removes a pool pod (a rollout, an eviction, a node drain) the pod leaves its Service's
EndpointSlices at once, so the orchestrators pin no new session to it once their endpoint cache (5 s)
has moved on. Sessions already pinned to it may be in the middle of a turn, and a turn is many requests
(encoder chunks, a backbone generation, speech-LM and vocoder pushes). tritonserver, once it gets
SIGTERM, refuses every new request and only lets the ones in flight finish, so a SIGTERM in the middle
of a turn cuts it. The kubelet runs this hook before SIGTERM: it waits ``--min-seconds``, then until no
inference request has completed or been pending for ``--quiet-seconds``, and never longer than
``--max-seconds`` in all. A pod the autoscaler drained (no session left) is quiet at once.

It reads only Triton's own Prometheus metrics (``nv_inference_request_success`` and ``_failure``
counters, ``nv_inference_pending_request_count``) with the standard library: it starts in milliseconds
and nothing it calls can hold it past its bound. Metrics that do not answer mean there is nothing left
to wait for.

    python3 -m services.triton.drain_wait --metrics-url http://127.0.0.1:8002/metrics \\
        --min-seconds 10 --quiet-seconds 5 --max-seconds 60
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

COMPLETED = ("nv_inference_request_success", "nv_inference_request_failure")
PENDING = "nv_inference_pending_request_count"
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(?P<value>\S+)")
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Activity:
    completed: float  # requests finished so far, every model (a counter)
    pending: float  # requests waiting to execute now, every model


def parse_activity(text: str) -> Activity:
    completed = pending = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, value = match["name"], float(match["value"])
        if name in COMPLETED:
            completed += value
        elif name == PENDING:
            pending += value
    return Activity(completed, pending)


def fetch_activity(url: str, timeout: float) -> Activity | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return parse_activity(response.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def wait_until_quiet(
    read: Callable[[], Activity | None],
    *,
    min_seconds: float,
    quiet_seconds: float,
    max_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Blocks as described in the module docstring; returns why it stopped waiting."""
    start = clock()
    last: Activity | None = None
    quiet_since = start
    while True:
        now = clock()
        if now - start >= max_seconds:
            return f"still busy after {max_seconds:.0f} s: stopping anyway"
        current = read()
        if current is None:
            return "Triton's metrics do not answer: nothing left to wait for"
        if current.pending > 0 or (last is not None and current.completed != last.completed):
            quiet_since = now
        last = current
        if now - start >= min_seconds and now - quiet_since >= quiet_seconds:
            return f"no request for {quiet_seconds:.0f} s after {now - start:.0f} s: the turns in flight are over"
        sleep(POLL_SECONDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="preStop: wait until tritonserver has had no request for a while")
    parser.add_argument("--metrics-url", default="http://127.0.0.1:8002/metrics")
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--quiet-seconds", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reason = wait_until_quiet(
        lambda: fetch_activity(args.metrics_url, timeout=min(2.0, args.max_seconds)),
        min_seconds=args.min_seconds,
        quiet_seconds=args.quiet_seconds,
        max_seconds=args.max_seconds,
    )
    print(f"drain_wait: {reason}", flush=True)
    return 0  # a preStop hook that fails only adds an event; the pod stops either way


if __name__ == "__main__":
    sys.exit(main())
