"""Leader election on a ``coordination.k8s.io/v1`` Lease, so two autoscaler replicas never both scale.

Expiry is judged the way client-go does it: by how long *this process* has seen the same holder and
renew time unchanged (monotonic clock), never by comparing the holder's ``renewTime`` with local wall
time, which would trust two nodes' clocks to agree. A freshly started candidate therefore waits one
full ``leaseDurationSeconds`` before taking over a lease it has never seen renewed. Writes carry the
read ``resourceVersion``, so of two candidates racing for an expired lease the API server accepts one
(the other gets 409 Conflict and stays a follower).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import V1Lease, V1LeaseSpec, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


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
    ) -> None:
        if not identity:
            raise ValueError("the leader-election identity must not be empty (use the pod name)")
        self._api = coordination_api
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._wall = wall_clock
        self._observed: tuple[object, ...] | None = None
        self._observed_at = 0.0
        self.is_leader = False

    def try_acquire_or_renew(self) -> bool:
        """One election round: True when this process holds the lease afterwards."""
        self.is_leader = self._round()
        return self.is_leader

    def release(self) -> None:
        """Gives the lease up on shutdown so a standby takes over at once instead of after expiry."""
        if not self.is_leader:
            return
        try:
            lease = self._api.read_namespaced_lease(self._name, self._namespace)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                self._api.replace_namespaced_lease(self._name, self._namespace, lease)
        except ApiException as exc:
            log.warning("could not release lease %s: %s %s", self._name, exc.status, exc.reason)
        self.is_leader = False

    def _round(self) -> bool:
        now = self._wall()
        try:
            lease = self._api.read_namespaced_lease(self._name, self._namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(now)
        spec = lease.spec or V1LeaseSpec()
        record = (spec.holder_identity, spec.renew_time, spec.lease_transitions)
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        holder = spec.holder_identity
        if holder and holder != self.identity:
            duration = spec.lease_duration_seconds or self._lease_seconds
            if self._clock() - self._observed_at < duration:
                return False
            log.info("lease %s held by %s expired (unchanged for %s s): taking over", self._name, holder, duration)
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = self._lease_seconds
        lease.spec = spec
        try:
            self._api.replace_namespaced_lease(self._name, self._namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._observed, self._observed_at = (self.identity, now, spec.lease_transitions), self._clock()
        return True

    def _create(self, now: datetime) -> bool:
        lease = V1Lease(
            metadata=V1ObjectMeta(name=self._name, namespace=self._namespace),
            spec=V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=self._lease_seconds,
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            self._api.create_namespaced_lease(self._namespace, lease)
        except ApiException as exc:
            if exc.status == 409:  # another candidate created it first
                return False
            raise
        self._observed, self._observed_at = (self.identity, now, 0), self._clock()
        return True
