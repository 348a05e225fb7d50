"""Leader election on a ``coordination.k8s.io/v1`` Lease, so two autoscaler replicas never both scale.

Expiry is judged the way client-go does it: by how long *this process* has seen the same holder and
renew time unchanged (monotonic clock), never by comparing the holder's ``renewTime`` with local wall
time, which would trust two nodes' clocks to agree. A freshly started candidate therefore waits one
full ``leaseDurationSeconds`` before taking over a lease it has never seen renewed. Writes carry the
read ``resourceVersion``, so of two candidates racing for an expired lease the API server accepts one
(the other gets 409 Conflict and stays a follower).

Fencing: holding the lease at the start of a round says nothing about the end of it (a slow call, a
GC pause, a stopped container). ``ensure_held`` is called before every write: it refuses when the
lease could already have passed to a standby by the time the write lands (judged from when our last
renewal was *sent*, on our monotonic clock), and when the Lease in the API server is no longer the
one our renewal wrote (another holder, or any write since).

Times are written as Kubernetes ``MicroTime``: RFC 3339 with exactly six fractional digits, as Go's
``2006-01-02T15:04:05.000000Z07:00`` layout parses them. The client turns every time into a ``datetime``
and sends ``datetime.isoformat()``, which drops the fraction when it is zero: a renewal that happens
on a whole second would be refused with 400. Every time this module sends goes through ``micro_time``,
which moves such a time by one microsecond.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


class LeadershipLost(RuntimeError):
    """This process may no longer hold the lease: it must not write."""


def micro_time(moment: datetime) -> datetime:
    """``moment`` in UTC, in a form the client serialises as a valid MicroTime (never a zero fraction)."""
    if moment.tzinfo is None:
        raise ValueError("lease times must be timezone-aware")
    moment = moment.astimezone(UTC)
    return moment + timedelta(microseconds=1) if moment.microsecond == 0 else moment


class LeaseElector:
    def __init__(
        self,
        coordination_api: Any,  # kubernetes.client.CoordinationV1Api
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout_seconds: float = 10.0,
    ) -> None:
        if not identity:
            raise ValueError("the leader-election identity must not be empty (use the pod name)")
        self._api = coordination_api
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._wall = wall_clock
        self._timeout = timeout_seconds
        self._observed: tuple[object, ...] | None = None
        self._observed_at = 0.0
        self._renew_sent_at = 0.0  # monotonic time our last successful renewal was sent
        self._written_version: str | None = None  # the Lease's resourceVersion after that renewal
        self.is_leader = False

    def try_acquire_or_renew(self) -> bool:
        """One election round: True when this process holds the lease afterwards."""
        self.is_leader = self._round()
        return self.is_leader

    def ensure_held(self, write_seconds: float) -> None:
        """Raises ``LeadershipLost`` unless a write that takes up to ``write_seconds`` lands while we hold the lease."""
        if not self.is_leader:
            raise LeadershipLost("not the leader")
        since = self._clock() - self._renew_sent_at
        if since + write_seconds >= self.lease_seconds:
            self.is_leader = False
            raise LeadershipLost(
                f"the last renewal was sent {since:.1f} s ago; a {write_seconds:.0f} s write could land after the "
                f"{self.lease_seconds} s lease passed to a standby"
            )
        lease = self._read()
        holder = lease.spec.holder_identity if lease.spec else None
        version = lease.metadata.resource_version if lease.metadata else None
        if holder != self.identity or version != self._written_version:
            self.is_leader = False
            raise LeadershipLost(
                f"lease {self._name} is held by {holder or 'nobody'} at resourceVersion {version}, "
                f"not by {self.identity} at {self._written_version}"
            )

    def release(self) -> None:
        """Gives the lease up on shutdown so a standby takes over at once instead of after expiry."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            lease = self._read()
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                self._sendable_times(lease.spec)
                self._api.replace_namespaced_lease(self._name, self._namespace, lease, _request_timeout=self._timeout)
        except ApiException as exc:
            log.warning("could not release lease %s: %s %s", self._name, exc.status, exc.reason)

    def _read(self) -> Any:
        return self._api.read_namespaced_lease(self._name, self._namespace, _request_timeout=self._timeout)

    def _round(self) -> bool:
        now = micro_time(self._wall())
        sent_at = self._clock()
        try:
            lease = self._read()
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(now, sent_at)
        spec = lease.spec or V1LeaseSpec()
        record = (spec.holder_identity, spec.renew_time, spec.lease_transitions)
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        holder = spec.holder_identity
        if holder and holder != self.identity:
            duration = spec.lease_duration_seconds or self.lease_seconds
            if self._clock() - self._observed_at < duration:
                return False
            log.info("lease %s held by %s expired (unchanged for %s s): taking over", self._name, holder, duration)
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = self.lease_seconds
        self._sendable_times(spec)
        lease.spec = spec
        try:
            written = self._api.replace_namespaced_lease(
                self._name, self._namespace, lease, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._held(written, sent_at, (self.identity, now, spec.lease_transitions))
        return True

    def _create(self, now: datetime, sent_at: float) -> bool:
        lease = V1Lease(
            metadata=V1ObjectMeta(name=self._name, namespace=self._namespace),
            spec=V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self.lease_seconds,
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            written = self._api.create_namespaced_lease(self._namespace, lease, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 409:  # another candidate created it first
                return False
            raise
        self._held(written, sent_at, (self.identity, now, 0))
        return True

    def _held(self, written: Any, sent_at: float, record: tuple[object, ...]) -> None:
        self._observed, self._observed_at = record, self._clock()
        self._renew_sent_at = sent_at
        self._written_version = written.metadata.resource_version

    @staticmethod
    def _sendable_times(spec: Any) -> None:
        """Times read back (another holder's acquireTime, say) are sent again: each in a form the server accepts."""
        for name in ("acquire_time", "renew_time"):
            if getattr(spec, name) is not None:
                setattr(spec, name, micro_time(getattr(spec, name)))
