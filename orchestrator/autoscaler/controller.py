"""One autoscaler tick: renew leadership, observe every pool, decide, and carry the decision out.

The order of writes is what keeps sessions safe: drain marks go to Redis first (the router stops
pinning there), deletion cost is lowered only on pods that are already drained, and the Deployment's
replicas drop last, so the ReplicaSet controller's choice is made after the annotations are in place.
In dry-run the same decisions are logged and nothing is written (reads still happen).

Every write is fenced: just before it, the round's deadline is checked and the lease is confirmed
(``LeaseElector.ensure_held``), so a leader that lost its lease mid-round (a slow call, a pause)
stops writing instead of racing the standby that took over. The replica write also carries the
Deployment's resourceVersion from the observation: if anything changed the Deployment since, the API
server refuses it; a change of status only (same replicas) is retried once at the new version, a
change of replicas (someone scaled by hand) is left for the next round to decide on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from orchestrator.autoscaler.bounds import Bounds, Deadline
from orchestrator.autoscaler.config import AutoscalerConfig, PoolConfig
from orchestrator.autoscaler.demand import LatencySource, PinStore
from orchestrator.autoscaler.heartbeat import Heartbeat
from orchestrator.autoscaler.kube import KubernetesPools, ScaleConflict, ScaleState
from orchestrator.autoscaler.lease import LeadershipLost, LeaseElector
from orchestrator.autoscaler.model import DRAINED_DELETION_COST, Decision, PodView, PoolMemory, PoolObservation
from orchestrator.autoscaler.policy import decide

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Autoscaler:
    config: AutoscalerConfig
    cluster: KubernetesPools
    pins: PinStore
    latency: LatencySource
    elector: LeaseElector
    dry_run: bool
    clock: Callable[[], float]
    bounds: Bounds = field(default_factory=Bounds)
    memory: dict[str, PoolMemory] = field(default_factory=dict)
    _deadline: Deadline | None = None

    def tick(self) -> list[Decision]:
        """One round; returns the decisions carried out (empty when another replica leads).

        Dry-run does not take the lease either (that would be a write): dry-run replicas all log.
        Raises ``RoundTimeout`` when the round runs past ``bounds.round_seconds`` (it stops before its next
        call or write), and whatever a dependency raises; ``run`` logs both and goes on.
        """
        self._deadline = Deadline(self.bounds.round_seconds, self.clock)
        if not self.dry_run and not self.elector.try_acquire_or_renew():
            if self.memory:
                log.info("lost leadership of the autoscaler lease; standing by")
            self.memory.clear()  # a returning leader must not act on a stale history
            return []
        decisions: list[Decision] = []
        try:
            for pool in self.config.pools:
                decisions.append(self._tick_pool(pool))
        except LeadershipLost as exc:
            log.warning("lost the autoscaler lease mid-round (%s): no further writes; standing by", exc)
            self.memory.clear()
        return decisions

    def run(self, interval_seconds: float, stop: threading.Event, heartbeat: Heartbeat | None = None) -> None:
        """Rounds every ``interval_seconds`` until ``stop``; a heartbeat after each, whatever its outcome."""
        if heartbeat is not None:
            heartbeat.beat("starting")
        try:
            while not stop.is_set():
                try:
                    result = "ok" if self.tick() or self.dry_run else "standby"
                except Exception as exc:  # one bad round (API hiccup) must not end the autoscaler
                    log.exception("autoscaler round failed; retrying in %.0f s", interval_seconds)
                    result = f"failed: {type(exc).__name__}: {exc}"[:500]
                if heartbeat is not None:
                    heartbeat.beat(result)
                stop.wait(interval_seconds)
        finally:
            if not self.dry_run:
                self.elector.release()

    def observe(self, pool: PoolConfig, deployment: str) -> tuple[PoolObservation, ScaleState]:
        scale = self._step("reading the scale", lambda: self.cluster.scale(deployment))
        pods = self._step("listing pods", lambda: self.cluster.pods(deployment))
        names = [pod.name for pod in pods]
        if not self.dry_run:
            self._fence("counting pins (the count prunes stale ones)", self.bounds.redis_seconds)
        sessions = self._step("counting pins", lambda: self.pins.live_sessions(pool.name, names))
        draining = self._step("reading drain marks", lambda: self.pins.draining(pool.name))
        latency = self._step("querying latency", lambda: self.latency.latency(deployment))
        observation = PoolObservation(
            time=self.clock(),
            spec_replicas=scale.replicas,
            pods=tuple(
                PodView(pod.name, pod.ready, sessions.get(pod.name, 0), pod.name in draining, pod.deletion_cost)
                for pod in pods
            ),
            active_sessions=latency.active_sessions,
            stage_p95_seconds=latency.stage_p95_seconds,
            queue_seconds=latency.queue_seconds,
        )
        return observation, scale

    def _tick_pool(self, pool: PoolConfig) -> Decision:
        deployment = self._step("finding the pool", lambda: self.cluster.deployment_for(pool.name, pool.deployment))
        obs, scale = self.observe(pool, deployment)
        decision, self.memory[pool.name] = decide(pool, obs, self.memory.get(pool.name, PoolMemory()))
        # Drain marks of pods that no longer exist (deleted, or the Deployment rolled) are cleaned up.
        gone = self._step("reading drain marks", lambda: self.pins.draining(pool.name)) - {p.name for p in obs.pods}
        self._log(decision, obs, deployment)
        if self.dry_run:
            return decision
        if decision.start_draining or decision.stop_draining or gone:
            self._fence("marking drains", self.bounds.redis_seconds)
            self.pins.mark_draining(pool.name, decision.start_draining, [*decision.stop_draining, *sorted(gone)])
        for pod in decision.clear_cost:
            self._fence(f"clearing the deletion cost of {pod}", self.bounds.kube_seconds)
            self.cluster.set_deletion_cost(pod, None)
        for pod in decision.remove:
            self._fence(f"lowering the deletion cost of {pod}", self.bounds.kube_seconds)
            self.cluster.set_deletion_cost(pod, DRAINED_DELETION_COST)
        if decision.replicas != obs.spec_replicas:
            self._set_replicas(deployment, decision.replicas, scale)
        return decision

    def _set_replicas(self, deployment: str, replicas: int, observed: ScaleState) -> None:
        self._fence(f"scaling {deployment}", self.bounds.kube_seconds)
        try:
            self.cluster.set_replicas(deployment, replicas, observed.resource_version)
            return
        except ScaleConflict:
            current = self._step("re-reading the scale", lambda: self.cluster.scale(deployment))
        if current.replicas != observed.replicas:
            log.warning(
                "%s was scaled to %d by someone else since it was observed at %d: not setting %d; "
                "the next round decides again",
                deployment,
                current.replicas,
                observed.replicas,
                replicas,
            )
            return
        self._fence(f"scaling {deployment} (retry at the new resourceVersion)", self.bounds.kube_seconds)
        try:
            self.cluster.set_replicas(deployment, replicas, current.resource_version)
        except ScaleConflict:
            log.warning("%s keeps changing under the scale write; the next round decides again", deployment)

    def _step(self, what: str, call: Callable[[], T]) -> T:
        assert self._deadline is not None
        self._deadline.check(what)
        return call()

    def _fence(self, what: str, write_seconds: float) -> None:
        assert self._deadline is not None
        self._deadline.check(what)
        self.elector.ensure_held(write_seconds)

    def _log(self, decision: Decision, obs: PoolObservation, deployment: str) -> None:
        changed = decision.replicas != obs.spec_replicas or decision.changes_anything
        level = logging.INFO if changed or decision.overdue else logging.DEBUG
        log.log(
            level,
            "%spool %s (%s): demand %d sessions, latency/SLO %.2f, recommended %d, desired %d, replicas %d -> %d, "
            "drain +%s -%s, remove %s%s",
            "dry-run: " if self.dry_run else "",
            decision.pool,
            deployment,
            decision.demand,
            decision.latency_ratio,
            decision.recommended,
            decision.desired,
            obs.spec_replicas,
            decision.replicas,
            list(decision.start_draining),
            list(decision.stop_draining),
            list(decision.remove),
            "".join(f"; {note}" for note in decision.notes),
        )
