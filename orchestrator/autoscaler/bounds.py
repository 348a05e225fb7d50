"""How long the autoscaler waits for anything: every dependency call and every round has a bound.

Without them one hung call (an API server behind a dead load balancer, a SIGSTOPped Redis, a Prometheus
that accepts and never answers) stops scaling silently and forever. With them a round either finishes
or fails within a known time, the loop goes on, and the heartbeat file (``heartbeat.py``) proves it to
the kubelet's liveness probe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class RoundTimeout(RuntimeError):
    """The round ran past ``round_seconds``; it stops before its next call or write."""


@dataclass(frozen=True)
class Bounds:
    kube_seconds: float = 10.0  # one Kubernetes API request, connect to last byte
    redis_seconds: float = 5.0  # connect and each socket read/write to Redis (never retried: the next round is)
    prometheus_seconds: float = 5.0  # one PromQL query
    prometheus_backoff_seconds: float = 30.0  # after a failed query, Prometheus is skipped this long
    round_seconds: float = 60.0  # a whole round: no new call or write starts after this

    def __post_init__(self) -> None:
        for name in ("kube_seconds", "redis_seconds", "prometheus_seconds", "round_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def longest_call_seconds(self) -> float:
        """The longest a single step between two deadline checks can take: two Kubernetes calls (a pod list
        reads the Deployment first), a Redis connect and call, or a query."""
        return max(2 * self.kube_seconds, 2 * self.redis_seconds, self.prometheus_seconds)

    def heartbeat_max_age(self, interval_seconds: float) -> float:
        """Oldest a heartbeat can be while the loop is healthy: a wait, the longest round, its last step, slack."""
        return interval_seconds + self.round_seconds + self.longest_call_seconds + 10.0


class Deadline:
    """The current round's end on a monotonic clock."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seconds = seconds
        self._end = clock() + seconds

    def check(self, before: str) -> None:
        if self._clock() > self._end:
            raise RoundTimeout(f"the round ran past {self._seconds:.0f} s; stopped before {before}")
