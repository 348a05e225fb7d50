"""The scaling decision on hand-built observations: each test pins one rule of orchestrator.autoscaler.policy."""

from __future__ import annotations

import pytest

from orchestrator.autoscaler import Decision, PodView, PoolConfig, PoolMemory, PoolObservation, Slo, decide
from orchestrator.autoscaler.model import DRAINED_DELETION_COST

POOL = PoolConfig(
    name="all",
    min_replicas=1,
    max_replicas=6,
    sessions_per_pod=8,
    target_utilization=0.75,
    slo=Slo({"backbone": 0.2}, queue_seconds=0.05),
    scale_up_window_seconds=15,
    scale_down_window_seconds=60,
    max_step_up=4,
    max_step_down=1,
    max_drain_seconds=120,
)


def pods(*specs: tuple[str, int] | tuple[str, int, bool] | tuple[str, int, bool, bool]) -> tuple[PodView, ...]:
    """(name, sessions[, draining[, ready]])"""
    views = []
    for spec in specs:
        name, sessions = spec[0], spec[1]
        draining = len(spec) > 2 and bool(spec[2])
        ready = len(spec) <= 3 or bool(spec[3])
        views.append(PodView(name, ready, sessions, draining))
    return tuple(views)


def settled_memory(replicas: int, now: float) -> PoolMemory:
    """A leader that has watched the pool for longer than the down-window, recommending ``replicas``."""
    return PoolMemory(((now - 30, replicas),), {}, first_seen=now - 600)


def test_sessions_size_the_pool_with_headroom() -> None:
    obs = PoolObservation(0.0, 1, pods(("p-a", 20)))
    decision, _ = decide(POOL, obs, PoolMemory())
    assert (decision.recommended, decision.desired, decision.replicas) == (4, 4, 4)  # ceil(20 / 6)


def test_latency_over_the_slo_adds_pods_even_with_few_sessions() -> None:
    obs = PoolObservation(0.0, 2, pods(("p-a", 3), ("p-b", 3)), stage_p95_seconds={"backbone": 0.3})
    decision, _ = decide(POOL, obs, PoolMemory())
    assert decision.latency_ratio == pytest.approx(1.5)
    assert decision.replicas == 3  # ceil(2 ready pods * 1.5)


def test_a_huge_latency_ratio_at_most_doubles_the_ready_pods() -> None:
    obs = PoolObservation(0.0, 1, pods(("p-a", 2)), queue_seconds=5.0)
    decision, _ = decide(POOL, obs, PoolMemory())
    assert decision.latency_ratio == 100.0
    assert decision.replicas == 2


def test_latency_from_stages_the_pool_has_no_slo_for_is_ignored() -> None:
    obs = PoolObservation(0.0, 1, pods(("p-a", 2)), stage_p95_seconds={"vocoder": 9.0})
    assert decide(POOL, obs, PoolMemory())[0].replicas == 1


def test_max_replicas_and_step_limit_bound_a_burst() -> None:
    memory = PoolMemory()
    decision, memory = decide(POOL, PoolObservation(0.0, 1, pods(("p-a", 100))), memory)
    assert decision.replicas == 5  # 1 + max_step_up
    decision, memory = decide(POOL, PoolObservation(15.0, 5, pods(("p-a", 100))), memory)
    assert decision.replicas == 6  # max_replicas


def test_min_replicas_holds_with_no_sessions() -> None:
    pool = PoolConfig("all", min_replicas=2, max_replicas=4, scale_down_window_seconds=0)
    decision, _ = decide(pool, PoolObservation(0.0, 2, pods(("p-a", 0), ("p-b", 0))), PoolMemory())
    assert decision.desired == 2 and decision.start_draining == () and decision.replicas == 2


def test_a_pool_at_zero_gets_its_recommendation_at_once_despite_the_up_window() -> None:
    """Nothing serves at zero, so nothing is smoothed: the window that ignores a spike would keep it at zero."""
    pool = PoolConfig("all", min_replicas=1, max_replicas=6, scale_up_window_seconds=300)
    memory = PoolMemory(((0.0, 0),), {}, first_seen=0.0)  # a history that saw it at zero
    bare, _ = decide(pool, PoolObservation(15.0, 0, ()), memory)
    assert (bare.desired, bare.replicas) == (1, 1)  # min_replicas at once
    busy, _ = decide(pool, PoolObservation(15.0, 0, (), active_sessions=20), memory)
    assert (busy.recommended, busy.replicas) == (4, 4)  # ceil(20 / 6), not held back by the window


def test_a_one_interval_spike_does_not_scale_up_when_the_up_window_spans_two() -> None:
    pool = PoolConfig("all", max_replicas=6, scale_up_window_seconds=15)
    memory = settled_memory(1, 100.0)
    quiet, memory = decide(pool, PoolObservation(100.0, 1, pods(("p-a", 2))), memory)
    spike, memory = decide(pool, PoolObservation(115.0, 1, pods(("p-a", 30))), memory)
    assert (quiet.replicas, spike.replicas) == (1, 1)
    held, _ = decide(pool, PoolObservation(130.0, 1, pods(("p-a", 30))), memory)
    assert held.replicas == 5


def test_scale_down_drains_the_pod_with_fewest_sessions_and_keeps_replicas() -> None:
    obs = PoolObservation(600.0, 3, pods(("p-a", 2), ("p-b", 1), ("p-c", 3)))
    decision, memory = decide(POOL, obs, settled_memory(1, 600.0))
    assert decision.desired == 2 and decision.start_draining == ("p-b",)
    assert decision.replicas == 3 and decision.remove == ()  # p-b still holds a session
    assert memory.draining_since == {"p-b": 600.0}


def test_an_unready_pod_is_drained_before_a_ready_empty_one() -> None:
    obs = PoolObservation(600.0, 3, pods(("p-a", 0), ("p-b", 2), ("p-c", 0, False, False)))
    decision, _ = decide(POOL, obs, settled_memory(1, 600.0))
    assert decision.start_draining == ("p-c",)


def test_a_drained_pod_gets_low_cost_and_replicas_drop_by_one() -> None:
    obs = PoolObservation(600.0, 3, pods(("p-a", 2), ("p-b", 0, True), ("p-c", 3)))
    decision, memory = decide(POOL, obs, settled_memory(1, 600.0))
    assert decision.remove == ("p-b",) and decision.replicas == 2
    assert "p-b" not in memory.draining_since


def test_a_pod_marked_draining_in_this_interval_is_not_removed_yet() -> None:
    # Empty now, but a pin may have landed between this read and the drain mark: wait one interval.
    obs = PoolObservation(600.0, 2, pods(("p-a", 2), ("p-b", 0)))
    decision, _ = decide(POOL, obs, settled_memory(1, 600.0))
    assert decision.start_draining == ("p-b",) and decision.remove == () and decision.replicas == 2


def test_removal_waits_while_a_kept_pod_is_unready() -> None:
    # The ReplicaSet deletes unready pods before it looks at deletion cost: it would take p-c.
    obs = PoolObservation(600.0, 3, pods(("p-a", 2), ("p-b", 0, True), ("p-c", 1, False, False)))
    decision, _ = decide(POOL, obs, settled_memory(2, 600.0))
    assert decision.remove == () and decision.replicas == 3
    assert any("p-c" in note for note in decision.notes)


def test_a_long_drain_is_reported_overdue_and_still_waits() -> None:
    memory = PoolMemory(((560.0, 1),), {"p-b": 400.0}, first_seen=0.0)
    obs = PoolObservation(600.0, 2, pods(("p-a", 2), ("p-b", 1, True)))
    decision, _ = decide(POOL, obs, memory)
    assert decision.overdue == ("p-b",) and decision.remove == () and decision.replicas == 2


def test_rising_demand_takes_draining_pods_back_before_adding_new_ones() -> None:
    obs = PoolObservation(600.0, 3, pods(("p-a", 6), ("p-b", 1, True), ("p-c", 0, True)))
    decision, _ = decide(POOL, obs, settled_memory(1, 600.0))
    # demand 7 -> 2 pods: one draining pod comes back (the fuller one), none is created.
    assert decision.stop_draining == ("p-b",) and decision.replicas == 2
    assert decision.remove == ("p-c",)


def test_a_pod_that_keeps_our_low_cost_but_stays_has_it_cleared() -> None:
    view = PodView("p-b", True, 3, False, DRAINED_DELETION_COST)
    obs = PoolObservation(600.0, 2, (PodView("p-a", True, 3, False), view))
    decision, _ = decide(POOL, obs, settled_memory(2, 600.0))
    assert decision.clear_cost == ("p-b",)


def test_a_new_leader_waits_one_down_window_before_scaling_down() -> None:
    memory = PoolMemory()
    decisions: list[Decision] = []
    for t in range(0, 90, 15):
        decision, memory = decide(POOL, PoolObservation(float(t), 3, pods(("p-a", 1), ("p-b", 0), ("p-c", 0))), memory)
        decisions.append(decision)
    assert [d.start_draining for d in decisions[:4]] == [(), (), (), ()]  # t = 0..45 < 60 s window
    assert decisions[4].start_draining == ("p-b",)
