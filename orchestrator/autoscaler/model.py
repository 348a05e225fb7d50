"""What the autoscaler sees of a pool in one interval, what it remembers, and what it decides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Value of `controller.kubernetes.io/pod-deletion-cost` on drained pods. The ReplicaSet controller deletes
# the pods with the lowest cost first (unset = 0), so only drained pods carry a negative one.
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
DRAINED_DELETION_COST = -1000


@dataclass(frozen=True)
class PodView:
    name: str
    ready: bool
    sessions: int  # live sessions pinned to the pod
    draining: bool  # in the pool's draining set when observed (the router already skips it)
    deletion_cost: int | None = None  # the annotation's current value; None when unset


@dataclass(frozen=True)
class PoolObservation:
    time: float  # seconds on a monotonic clock (or the trace's clock)
    spec_replicas: int  # the Deployment's replicas (from the scale subresource)
    pods: tuple[PodView, ...]  # the Deployment's pods that are not being deleted
    active_sessions: int | None = None  # the orchestrators' count, when known (may exceed pins: unrouted)
    stage_p95_seconds: Mapping[str, float] = field(default_factory=dict)
    queue_seconds: float | None = None

    @property
    def pinned_sessions(self) -> int:
        return sum(pod.sessions for pod in self.pods)


@dataclass(frozen=True)
class PoolMemory:
    """State carried from one interval to the next (kept in the leader's memory only: a new leader starts
    with an empty history, which the policy handles by waiting one full down-window before its first scale-down)."""

    recommendations: tuple[tuple[float, int], ...] = ()  # (time, recommended replicas)
    draining_since: Mapping[str, float] = field(default_factory=dict)
    first_seen: float | None = None  # time of the first observation of this pool by this leader


@dataclass(frozen=True)
class Decision:
    pool: str
    time: float
    demand: int  # sessions the pool must hold
    latency_ratio: float  # worst observed/SLO ratio over stages and queue time (0 when unknown)
    recommended: int  # replicas this interval's demand asks for, before stabilisation
    desired: int  # pods that should serve after stabilisation, step limits and min/max
    replicas: int  # what the Deployment's replicas are set to now (stays higher while pods drain)
    start_draining: tuple[str, ...] = ()
    stop_draining: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()  # drained (zero sessions): deletion cost lowered, then replicas lowered
    clear_cost: tuple[str, ...] = ()  # pods with our low deletion cost that are to stay
    overdue: tuple[str, ...] = ()  # draining past max_drain_seconds and still holding sessions
    notes: tuple[str, ...] = ()  # why removal waits, etc. (logged)

    @property
    def changes_anything(self) -> bool:
        return bool(self.start_draining or self.stop_draining or self.remove or self.clear_cost)
