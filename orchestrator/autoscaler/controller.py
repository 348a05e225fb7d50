"""One autoscaler tick: renew leadership, observe every pool, decide, and carry the decision out.

The order of writes is what keeps sessions safe: drain marks go to Redis first (the router stops
pinning there), deletion cost is lowered only on pods that are already drained, and the Deployment's
replicas drop last, so the ReplicaSet controller's choice is made after the annotations are in place.
In dry-run the same decisions are logged and nothing is written (reads still happen).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.autoscaler.config import AutoscalerConfig, PoolConfig
from orchestrator.autoscaler.demand import LatencySource, PinStore
from orchestrator.autoscaler.kube import KubernetesPools
from orchestrator.autoscaler.lease import LeaseElector
from orchestrator.autoscaler.model import DRAINED_DELETION_COST, Decision, PodView, PoolMemory, PoolObservation
from orchestrator.autoscaler.policy import decide

log = logging.getLogger(__name__)


@dataclass
class Autoscaler:
    config: AutoscalerConfig
    cluster: KubernetesPools
    pins: PinStore
    latency: LatencySource
    elector: LeaseElector
    dry_run: bool
    clock: Callable[[], float]
    memory: dict[str, PoolMemory] = field(default_factory=dict)

    def tick(self) -> list[Decision]:
        """One round; returns the decisions taken (empty when another replica leads).

        Dry-run does not take the lease either (that would be a write): dry-run replicas all log.
        """
        if not self.dry_run and not self.elector.try_acquire_or_renew():
            if self.memory:
                log.info("lost leadership of the autoscaler lease; standing by")
            self.memory.clear()  # a returning leader must not act on a stale history
            return []
        return [self._tick_pool(pool) for pool in self.config.pools]

    def run(self, interval_seconds: float, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception:  # one bad round (API hiccup) must not end the autoscaler
                    log.exception("autoscaler round failed; retrying in %.0f s", interval_seconds)
                stop.wait(interval_seconds)
        finally:
            if not self.dry_run:
                self.elector.release()

    def observe(self, pool: PoolConfig, deployment: str) -> PoolObservation:
        spec = self.cluster.replicas(deployment)
        pods = self.cluster.pods(deployment)
        names = [pod.name for pod in pods]
        sessions = self.pins.live_sessions(pool.name, names)
        draining = self.pins.draining(pool.name)
        latency = self.latency.latency(deployment)
        return PoolObservation(
            time=self.clock(),
            spec_replicas=spec,
            pods=tuple(
                PodView(pod.name, pod.ready, sessions.get(pod.name, 0), pod.name in draining, pod.deletion_cost)
                for pod in pods
            ),
            active_sessions=latency.active_sessions,
            stage_p95_seconds=latency.stage_p95_seconds,
            queue_seconds=latency.queue_seconds,
        )

    def _tick_pool(self, pool: PoolConfig) -> Decision:
        deployment = self.cluster.deployment_for(pool.name, pool.deployment)
        obs = self.observe(pool, deployment)
        decision, self.memory[pool.name] = decide(pool, obs, self.memory.get(pool.name, PoolMemory()))
        gone = self.pins.draining(pool.name) - {pod.name for pod in obs.pods}
        self._log(decision, obs, deployment)
        if self.dry_run:
            return decision
        if decision.start_draining or decision.stop_draining or gone:
            self.pins.mark_draining(pool.name, decision.start_draining, [*decision.stop_draining, *sorted(gone)])
        for pod in decision.clear_cost:
            self.cluster.set_deletion_cost(pod, None)
        for pod in decision.remove:
            self.cluster.set_deletion_cost(pod, DRAINED_DELETION_COST)
        if decision.replicas != obs.spec_replicas:
            self.cluster.set_replicas(deployment, decision.replicas)
        return decision

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
