"""The autoscaler's decisions replayed over the recorded load traces in tests/data/load_traces/
(closed loop: see orchestrator.autoscaler.replay for what is simulated around the real policy)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from orchestrator.autoscaler import PoolConfig, Slo
from orchestrator.autoscaler.replay import Replay, load_trace, replay

TRACES = Path(__file__).parents[1] / "data" / "load_traces"
POOL = PoolConfig(
    name="all",
    min_replicas=1,
    max_replicas=10,
    sessions_per_pod=8,
    target_utilization=0.75,
    slo=Slo({}, queue_seconds=0.05),
    scale_up_window_seconds=30,
    scale_down_window_seconds=300,
    max_step_up=4,
    max_step_down=1,
    max_drain_seconds=900,
)
INITIAL = {"burst": 1, "oscillation": 1, "slow_decline": 10}


def run(name: str) -> Replay:
    return replay(load_trace(TRACES / f"{name}.jsonl"), POOL, startup_seconds=60, initial_replicas=INITIAL[name])


@pytest.mark.parametrize("name", sorted(INITIAL))
def test_no_session_is_ever_cut_and_bounds_hold(name: str) -> None:
    result = run(name)
    if name != "oscillation":  # the oscillation must not scale down at all (tested below)
        assert result.deleted, "the trace must exercise scale-down"
    assert [pod for pod in result.deleted if pod.sessions] == []
    for step in result.steps:
        decision = step.decision
        assert POOL.min_replicas <= decision.replicas <= POOL.max_replicas
        # Deletion cost is lowered only on pods that hold no session.
        assert all(step.sessions_per_pod[pod] == 0 for pod in decision.remove)
        holding = sum(1 for sessions in step.sessions_per_pod.values() if sessions)
        assert decision.replicas >= holding


def test_burst_is_met_within_four_intervals() -> None:
    result = run("burst")
    before = [s for s in result.steps if s.time < 300]
    assert {s.decision.replicas for s in before} == {1}
    needed = math.ceil(45 / (POOL.sessions_per_pod * POOL.target_utilization))
    first_up = next(s.time for s in result.steps if s.decision.replicas > 1)
    met = next(s.time for s in result.steps if s.decision.replicas >= needed)
    assert first_up <= 300 + 3 * 15
    assert met <= 300 + 4 * 15
    assert max(s.decision.replicas for s in result.steps) == needed  # no overshoot past the demand


def test_burst_scales_down_only_after_the_down_window_and_ends_sized_for_the_tail() -> None:
    result = run("burst")
    first_drain = next(s.time for s in result.steps if s.decision.start_draining)
    assert first_drain >= 900 + POOL.scale_down_window_seconds  # the load began to fall at t=900 s
    assert result.steps[-1].decision.replicas == 2  # 8 sessions remain: ceil(8 / 6)


def test_oscillation_faster_than_the_down_window_does_not_flap() -> None:
    result = run("oscillation")
    replicas = [s.decision.replicas for s in result.steps]
    assert replicas == sorted(replicas), "replicas went down and up again"
    assert result.replica_changes <= 3
    assert not any(s.decision.start_draining for s in result.steps)


def test_slow_decline_waits_for_lingering_sessions_then_removes_their_pods() -> None:
    result = run("slow_decline")
    overdue = [s for s in result.steps if s.decision.overdue]
    assert overdue, "lingering sessions must outlast max_drain_seconds"
    lingering_pods = set(overdue[-1].decision.overdue)
    deletions = {pod.name: pod.time for pod in result.deleted}
    assert all(deletions[pod] >= 3000 for pod in lingering_pods)  # lingering sessions end at t=3000 s
    assert result.steps[-1].decision.replicas == POOL.min_replicas
    steps = [s.decision.replicas for s in result.steps]
    assert all(b <= a for a, b in itertools.pairwise(steps)), "a declining load never scales up"
