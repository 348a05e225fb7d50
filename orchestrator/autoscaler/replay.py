"""Closed-loop replay of a recorded load trace through the real decision logic.

A trace records what the orchestrators saw (session start and end events of one pool); which pod each
session lands on depends on the autoscaler's own decisions, so the replay simulates the pool around
``policy.decide``: routing with the router's rule (``routing.choice.least_loaded``), pods that become
ready ``startup_seconds`` after creation, and a ReplicaSet controller that, when replicas drop, deletes
unready pods first and then the lowest deletion cost, exactly the order Kubernetes documents. Latency
comes from a toy model (queue time grows once the mean load of ready pods passes their capacity) and is labelled so.
The replay records every pod the simulated controller deleted together with the sessions it still held,
so tests can prove that no session is ever cut.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.autoscaler.config import PoolConfig
from orchestrator.autoscaler.model import DRAINED_DELETION_COST, Decision, PodView, PoolMemory, PoolObservation
from orchestrator.autoscaler.policy import decide
from orchestrator.routing.choice import least_loaded


@dataclass(frozen=True)
class SessionEvent:
    time: float
    kind: str  # "start" or "end"
    session: str


@dataclass(frozen=True)
class LoadTrace:
    pool: str
    interval_seconds: float
    duration_seconds: float
    description: str
    events: tuple[SessionEvent, ...]


def load_trace(path: Path) -> LoadTrace:
    """Reads a JSON-lines trace: one header object, then one object per session event, by time."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    if header.get("kind") != "header":
        raise ValueError(f"{path}: the first line must be the header object (kind=header)")
    events = tuple(SessionEvent(float(row["t"]), row["kind"], row["session"]) for row in rows)
    if any(b.time < a.time for a, b in itertools.pairwise(events)):
        raise ValueError(f"{path}: events must be sorted by time")
    return LoadTrace(
        header["pool"],
        float(header["interval_seconds"]),
        float(header["duration_seconds"]),
        header["description"],
        events,
    )


@dataclass
class _Pod:
    name: str
    ready_at: float
    sessions: set[str] = field(default_factory=set)
    deletion_cost: int | None = None


@dataclass(frozen=True)
class ReplayStep:
    time: float
    active_sessions: int
    ready_pods: int
    decision: Decision
    sessions_per_pod: dict[str, int]


@dataclass(frozen=True)
class DeletedPod:
    time: float
    name: str
    sessions: int  # sessions it still held when the simulated ReplicaSet deleted it


@dataclass
class Replay:
    steps: list[ReplayStep] = field(default_factory=list)
    deleted: list[DeletedPod] = field(default_factory=list)

    @property
    def replica_changes(self) -> int:
        values = [step.decision.replicas for step in self.steps]
        return sum(1 for a, b in itertools.pairwise(values) if a != b)


def toy_queue_seconds(mean_load: float, capacity: int) -> float:
    """Toy latency model for replays only: 2 ms queue time up to capacity, +40 ms per session beyond."""
    return 0.002 + 0.04 * max(0.0, mean_load - capacity)


def replay(
    trace: LoadTrace, pool: PoolConfig, startup_seconds: float = 60.0, initial_replicas: int | None = None
) -> Replay:
    pods: dict[str, _Pod] = {}
    serial = iter(range(1_000_000))
    draining: set[str] = set()
    unrouted: list[str] = []  # sessions waiting for a ready pod
    located: dict[str, str] = {}
    spec = initial_replicas if initial_replicas is not None else pool.min_replicas
    for _ in range(spec):
        name = f"{pool.name}-{next(serial):03d}"
        pods[name] = _Pod(name, ready_at=0.0)
    memory = PoolMemory()
    result = Replay()
    events: Iterator[SessionEvent] = iter(trace.events)
    pending = next(events, None)
    now = 0.0
    while now <= trace.duration_seconds:
        while pending is not None and pending.time <= now:
            if pending.kind == "start":
                unrouted.append(pending.session)
            elif pending.session in located:
                pods[located.pop(pending.session)].sessions.discard(pending.session)
            elif pending.session in unrouted:
                unrouted.remove(pending.session)
            pending = next(events, None)
        ready = {name: pod for name, pod in pods.items() if pod.ready_at <= now}
        for session in list(unrouted):
            choice = least_loaded({name: len(pod.sessions) for name, pod in ready.items()}, draining)
            if choice is None:
                break
            ready[choice].sessions.add(session)
            located[session] = choice
            unrouted.remove(session)

        mean_load = sum(len(pod.sessions) for pod in ready.values()) / max(len(ready), 1)
        obs = PoolObservation(
            time=now,
            spec_replicas=spec,
            pods=tuple(
                PodView(p.name, p.ready_at <= now, len(p.sessions), p.name in draining, p.deletion_cost)
                for p in pods.values()
            ),
            active_sessions=len(located) + len(unrouted),
            queue_seconds=toy_queue_seconds(mean_load, pool.sessions_per_pod),
        )
        decision, memory = decide(pool, obs, memory)
        result.steps.append(
            ReplayStep(
                now, obs.active_sessions or 0, len(ready), decision, {n: len(p.sessions) for n, p in pods.items()}
            )
        )
        draining |= set(decision.start_draining)
        draining -= set(decision.stop_draining)
        for name in decision.clear_cost:
            pods[name].deletion_cost = None
        for name in decision.remove:
            pods[name].deletion_cost = DRAINED_DELETION_COST
        spec = decision.replicas
        _reconcile(pods, spec, now, startup_seconds, serial, pool.name, result, located)
        draining &= set(pods)
        now += trace.interval_seconds
    return result


def _reconcile(
    pods: dict[str, _Pod],
    spec: int,
    now: float,
    startup: float,
    serial: Iterator[int],
    prefix: str,
    result: Replay,
    located: dict[str, str],
) -> None:
    """The ReplicaSet controller: creates pods up to ``spec``, or deletes the lowest-ranked ones."""
    while len(pods) < spec:
        name = f"{prefix}-{next(serial):03d}"
        pods[name] = _Pod(name, ready_at=now + startup)
    if len(pods) > spec:
        ranked = sorted(pods.values(), key=lambda p: (p.ready_at <= now, p.deletion_cost or 0, p.name))
        for pod in ranked[: len(pods) - spec]:
            result.deleted.append(DeletedPod(now, pod.name, len(pod.sessions)))
            for session in pod.sessions:
                located.pop(session, None)
            del pods[pod.name]
