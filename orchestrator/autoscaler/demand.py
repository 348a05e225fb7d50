"""Where demand comes from: session pins in Redis (always) and latency from Prometheus (optional).

Both are behind small interfaces so the controller can be driven by recorded values in tests.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from redis import Redis

from orchestrator.routing.keys import RoutingKeys

log = logging.getLogger(__name__)

# KEYS: the pods' session sets. ARGV: 1 key prefix, 2 pool, 3 prune (1/0), 4.. pod names (same order).
# A member counts only while its pin hash still names this pod: a session that died without releasing
# leaves a member behind, but its pin expires with the session's TTL. Pruning happens only outside
# dry-run, because dry-run writes nothing.
COUNT_LIVE = """
local counts = {}
for i = 1, #KEYS do
  local live = 0
  for _, sid in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    if redis.call('HGET', ARGV[1] .. 'session:' .. sid .. ':pods', ARGV[2]) == ARGV[3 + i] then
      live = live + 1
    elseif ARGV[3] == '1' then
      redis.call('SREM', KEYS[i], sid)
    end
  end
  counts[i] = live
end
return counts
"""


class PinStore(Protocol):
    def live_sessions(self, pool: str, pods: list[str]) -> dict[str, int]: ...

    def draining(self, pool: str) -> set[str]: ...

    def mark_draining(self, pool: str, add: Iterable[str], remove: Iterable[str]) -> None: ...


class RedisPins:
    """Reads and edits the routing keys the orchestrators write (see routing.keys)."""

    def __init__(self, redis: Redis, prefix: str, prune: bool) -> None:
        self._redis = redis
        self._keys = RoutingKeys(prefix)
        self._prune = prune
        self._count = redis.register_script(COUNT_LIVE)

    def live_sessions(self, pool: str, pods: list[str]) -> dict[str, int]:
        if not pods:
            return {}
        keys = [self._keys.pod_sessions(pool, pod) for pod in pods]
        counts = self._count(keys=keys, args=[self._keys.prefix, pool, "1" if self._prune else "0", *pods])
        return {pod: int(count) for pod, count in zip(pods, counts, strict=True)}

    def draining(self, pool: str) -> set[str]:
        return {m.decode() if isinstance(m, bytes) else str(m) for m in self._redis.smembers(self._keys.draining(pool))}

    def mark_draining(self, pool: str, add: Iterable[str], remove: Iterable[str]) -> None:
        add, remove = list(add), list(remove)
        with self._redis.pipeline(transaction=True) as pipe:
            if add:
                pipe.sadd(self._keys.draining(pool), *add)
            if remove:
                pipe.srem(self._keys.draining(pool), *remove)
            pipe.execute()


@dataclass(frozen=True)
class Latency:
    stage_p95_seconds: Mapping[str, float] = field(default_factory=dict)
    queue_seconds: float | None = None
    active_sessions: int | None = None


class LatencySource(Protocol):
    def latency(self, deployment: str) -> Latency: ...


class NoLatency:
    """Without Prometheus the autoscaler sizes from sessions alone."""

    def latency(self, deployment: str) -> Latency:
        return Latency()


def pods_of(deployment: str) -> str:
    """A PromQL regex that matches exactly the pods of one Deployment: ``<name>-<template hash>-<suffix>``.

    A prefix match (``<name>-.*``) would also take the pods of a Deployment whose name starts with this
    one's plus a dash (pool ``all`` and pool ``all-big``).
    """
    escaped = re.sub(r"([.\\+*?()|\[\]{}^$])", r"\\\1", deployment)
    return f"{escaped}-[a-z0-9]{{1,10}}-[a-z0-9]{{5}}"


def _label(value: str) -> str:
    """A PromQL double-quoted string: backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class PrometheusLatency:
    """Queries Prometheus' HTTP API (``/api/v1/query``) for the orchestrators' and Triton's metrics.

    Every query is scoped to this release: ``namespace`` and the pods of the orchestrator Deployment (stage
    latency, active sessions) or of the pool's Deployment (Triton queue time), by the ``namespace`` and
    ``pod`` labels that Kubernetes service discovery (and the Prometheus Operator) attach. Without that a
    second release, or a staging copy in another namespace, would size this one.

    A query that fails or times out is logged and treated as unknown: sizing then falls back to sessions,
    which is safer than stopping the autoscaler because monitoring is down. After a failure Prometheus is
    skipped for ``backoff_seconds``, so a hung Prometheus costs one timeout per back-off, not one per query.
    """

    def __init__(
        self,
        base_url: str,
        namespace: str,
        orchestrator_deployment: str | None = None,
        window: str = "2m",
        timeout_seconds: float = 5.0,
        backoff_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._window = window
        self._timeout = timeout_seconds
        self._backoff = backoff_seconds
        self._clock = clock
        self._skip_until = float("-inf")
        self._orchestrators = f"namespace={_label(namespace)}"
        if orchestrator_deployment:
            self._orchestrators += f",pod=~{_label(pods_of(orchestrator_deployment))}"
        self._namespace = namespace

    def latency(self, deployment: str) -> Latency:
        w, orch = self._window, self._orchestrators
        pool = f"namespace={_label(self._namespace)},pod=~{_label(pods_of(deployment))}"
        stages = self._query(
            f"histogram_quantile(0.95, sum by (le, stage) (rate(minmo_stage_latency_seconds_bucket{{{orch}}}[{w}])))"
        )
        queue = self._query(
            f"sum(rate(nv_inference_queue_duration_us{{{pool}}}[{w}])) / 1e6"
            f" / sum(rate(nv_inference_request_success{{{pool}}}[{w}]))"
        )
        active = self._query(f"sum(minmo_active_sessions{{{orch}}})")
        return Latency(
            stage_p95_seconds={labels.get("stage", ""): value for labels, value in stages if value == value},
            queue_seconds=next((value for _, value in queue if value == value), None),  # NaN: no requests
            active_sessions=next((int(value) for _, value in active if value == value), None),
        )

    def _query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        if self._clock() < self._skip_until:
            return []
        url = f"{self._base}/api/v1/query?{urllib.parse.urlencode({'query': promql, 'timeout': f'{self._timeout}s'})}"
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as response:
                body = json.load(response)
        except (OSError, ValueError) as exc:  # socket timeouts are OSErrors
            self._skip_until = self._clock() + self._backoff
            log.warning(
                "Prometheus query failed (%s); sizing from sessions only for %.0f s: %s", exc, self._backoff, promql
            )
            return []
        if body.get("status") != "success":
            log.warning("Prometheus refused %s: %s", promql, body.get("error"))
            return []
        return [(item.get("metric", {}), float(item["value"][1])) for item in body["data"]["result"]]
