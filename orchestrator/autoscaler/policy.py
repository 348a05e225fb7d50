"""The scaling decision for one pool and one interval: pure, so recorded traces replay it exactly.

Sizing: replicas = ceil(demand / (sessions_per_pod * target_utilization)), raised in proportion to the
worst latency/SLO ratio when a stage p95 or Triton's queue time exceeds its bound (relative to the pods
that are ready, so pods still starting are not ordered twice). Stabilisation follows the
HorizontalPodAutoscaler's rule, which operators already know: scale up to the *lowest* recommendation of
the short up-window (a one-interval spike is ignored when the window spans two intervals), scale down
to the *highest* of the long down-window (an oscillation shorter than the window never scales down).
Steps are bounded per interval (``max_step_up``/``max_step_down`` pods). A pool with no serving pod
(scaled to zero by hand, or every pod draining) skips the up-window: at least ``min_replicas`` (>= 1) at
once, since a pool without a pod refuses sessions and so could never show the demand that would wake it.

Removal is two-phase because a Triton pod holds its sessions' state: a pod chosen to go is first marked
draining (the router pins nothing new there); only when it was already draining at observation time and
holds zero sessions is its deletion cost lowered and the Deployment's replicas lowered by one, so the
ReplicaSet controller deletes exactly that pod. A drain that outlives ``max_drain_seconds`` is reported
as overdue but still waits: cutting a live conversation is worse than paying for a pod longer, and a
session that died without releasing its pin stops counting when its pin's TTL expires, which bounds
the wait.
"""

from __future__ import annotations

import math

from orchestrator.autoscaler.config import PoolConfig
from orchestrator.autoscaler.model import DRAINED_DELETION_COST, Decision, PodView, PoolMemory, PoolObservation

MAX_LATENCY_FACTOR = 2.0


def latency_ratio(pool: PoolConfig, obs: PoolObservation) -> float:
    ratios = [
        obs.stage_p95_seconds[stage] / bound
        for stage, bound in pool.slo.stage_p95_seconds.items()
        if stage in obs.stage_p95_seconds
    ]
    if pool.slo.queue_seconds is not None and obs.queue_seconds is not None:
        ratios.append(obs.queue_seconds / pool.slo.queue_seconds)
    return max(ratios, default=0.0)


def recommend(pool: PoolConfig, obs: PoolObservation) -> tuple[int, int, float]:
    """(recommended replicas, demand, latency ratio) for this interval alone."""
    demand = max(obs.pinned_sessions, obs.active_sessions or 0)
    wanted = math.ceil(demand / (pool.sessions_per_pod * pool.target_utilization))
    ratio = latency_ratio(pool, obs)
    if ratio > 1.0:
        serving_ready = sum(1 for pod in obs.pods if pod.ready and not pod.draining)
        # Over the SLO: never fewer pods than serve now, and more in proportion to the overshoot, at most
        # twice as many per interval: a latency spike measured on one overloaded pod says little about
        # how many pods the load needs, and the capacity term already sizes for the sessions.
        wanted = max(wanted, serving_ready, math.ceil(max(serving_ready, 1) * min(ratio, MAX_LATENCY_FACTOR)))
    return min(max(wanted, pool.min_replicas), pool.max_replicas), demand, ratio


def decide(pool: PoolConfig, obs: PoolObservation, memory: PoolMemory) -> tuple[Decision, PoolMemory]:
    recommended, demand, ratio = recommend(pool, obs)
    horizon = max(pool.scale_up_window_seconds, pool.scale_down_window_seconds)
    history = (*tuple((t, r) for t, r in memory.recommendations if obs.time - t <= horizon), (obs.time, recommended))

    draining = [pod for pod in obs.pods if pod.draining]
    serving = obs.spec_replicas - len(draining)
    up = min(r for t, r in history if obs.time - t <= pool.scale_up_window_seconds)
    if serving <= 0:
        # From zero nothing serves, so there is no spike to smooth: any pod is better than none.
        up = recommended
    down = max(r for t, r in history if obs.time - t <= pool.scale_down_window_seconds)
    first_seen = obs.time if memory.first_seen is None else memory.first_seen
    # A new leader has no history: it waits one full down-window before removing anything.
    settled = obs.time - first_seen >= pool.scale_down_window_seconds
    if up > serving:
        desired = min(up, serving + pool.max_step_up)
    elif down < serving and settled:
        desired = max(down, serving - pool.max_step_down)
    else:
        desired = serving
    desired = min(max(desired, pool.min_replicas), pool.max_replicas)

    notes: list[str] = []
    start: list[str] = []
    stop: list[str] = []
    replicas = obs.spec_replicas
    if desired > serving:
        # Taking back draining pods is instant and free; new GPU pods take minutes.
        back = sorted(draining, key=lambda pod: (-pod.sessions, pod.name))[: desired - serving]
        stop = [pod.name for pod in back]
        replicas = obs.spec_replicas + (desired - serving - len(back))
    elif desired < serving:
        candidates = sorted(
            (pod for pod in obs.pods if not pod.draining), key=lambda pod: (pod.ready, pod.sessions, pod.name)
        )
        start = [pod.name for pod in candidates[: serving - desired]]

    remove = _removable(obs, set(stop), notes)
    # Pods being taken back were excluded from `remove`, so removal never cancels an addition.
    replicas -= len(remove)
    clear = [pod.name for pod in obs.pods if pod.deletion_cost == DRAINED_DELETION_COST and pod.name not in remove]

    since = {name: t for name, t in memory.draining_since.items() if name in {p.name for p in draining}}
    for pod in draining:
        since.setdefault(pod.name, obs.time)
    for name in stop:
        since.pop(name, None)
    for name in start:
        since[name] = obs.time
    overdue = tuple(
        pod.name
        for pod in draining
        if pod.name not in stop and pod.sessions > 0 and obs.time - since[pod.name] > pool.max_drain_seconds
    )
    if overdue:
        notes.append(
            f"drain overdue (> {pool.max_drain_seconds:.0f} s), still waiting for sessions: {', '.join(overdue)}"
        )
    for name in remove:
        since.pop(name, None)

    decision = Decision(
        pool=pool.name,
        time=obs.time,
        demand=demand,
        latency_ratio=ratio,
        recommended=recommended,
        desired=desired,
        replicas=replicas,
        start_draining=tuple(start),
        stop_draining=tuple(stop),
        remove=remove,
        clear_cost=tuple(clear),
        overdue=overdue,
        notes=tuple(notes),
    )
    return decision, PoolMemory(history, since, first_seen)


def _removable(obs: PoolObservation, undrained: set[str], notes: list[str]) -> tuple[str, ...]:
    """Drained pods that can go now.

    A pod counts as drained only if it was draining *when observed* and then held zero sessions: the
    router's pin script checks the draining set atomically, so no pin can land after that observation.
    Removal also waits until every pod that stays is ready, because the ReplicaSet controller deletes
    unready pods before it looks at deletion cost and would take a kept pod instead of the drained one.
    """
    drained = [pod for pod in obs.pods if pod.draining and pod.sessions == 0 and pod.name not in undrained]
    if not drained:
        return ()
    kept: list[PodView] = [pod for pod in obs.pods if pod not in drained]
    unready = [pod.name for pod in kept if not pod.ready]
    if unready or len(obs.pods) != obs.spec_replicas:
        notes.append(
            f"removal of drained {', '.join(p.name for p in drained)} waits: "
            f"{len(obs.pods)} pods for {obs.spec_replicas} replicas, unready kept pods: {', '.join(unready) or 'none'}"
        )
        return ()
    return tuple(pod.name for pod in drained)
