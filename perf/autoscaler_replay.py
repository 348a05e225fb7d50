"""Replays a recorded load trace through the autoscaler's policy and prints replicas over time.

    .venv/bin/python -m perf.autoscaler_replay tests/data/load_traces/burst.jsonl [--config autoscaler.yaml]

Rows are printed when something changes (replicas, ready pods, drains); ``--all`` prints every interval.
Without ``--config`` it uses the pool settings the trace tests use (8 sessions per pod, 75 % target).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.autoscaler import PoolConfig, Slo, load_config
from orchestrator.autoscaler.replay import load_trace, replay

DEFAULT_POOL = PoolConfig(name="all", max_replicas=10, slo=Slo({}, queue_seconds=0.05))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--config", type=Path, help="autoscaler YAML; its first pool is replayed")
    parser.add_argument("--initial-replicas", type=int)
    parser.add_argument("--startup-seconds", type=float, default=60.0, help="pod start to ready (simulated)")
    parser.add_argument("--all", action="store_true", help="print every interval")
    args = parser.parse_args(argv)

    pool = load_config(args.config).pools[0] if args.config else DEFAULT_POOL
    trace = load_trace(args.trace)
    result = replay(trace, pool, startup_seconds=args.startup_seconds, initial_replicas=args.initial_replicas)
    print(f"# {args.trace.name}: {trace.description}")
    print(
        f"# pool {pool.name}: {pool.sessions_per_pod} sessions/pod at {pool.target_utilization:.0%}, "
        f"min {pool.min_replicas} max {pool.max_replicas}, windows up {pool.scale_up_window_seconds:.0f} s "
        f"down {pool.scale_down_window_seconds:.0f} s, pod startup {args.startup_seconds:.0f} s (simulated)"
    )
    print("| time (s) | observed sessions | recommended | replicas | ready pods | draining | removed |")
    print("|---:|---:|---:|---:|---:|---|---|")
    previous: tuple[object, ...] | None = None
    for step in result.steps:
        d = step.decision
        key = (d.replicas, step.ready_pods, d.start_draining, d.remove, d.recommended)
        if args.all or key != previous:
            print(
                f"| {step.time:.0f} | {step.active_sessions} | {d.recommended} | {d.replicas} | {step.ready_pods} "
                f"| {' '.join(d.start_draining) or '-'} | {' '.join(d.remove) or '-'} |"
            )
        previous = key
    cut = sum(pod.sessions for pod in result.deleted)
    print(f"# replica changes: {result.replica_changes}; pods deleted: {len(result.deleted)}; sessions cut: {cut}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
