"""Where demand comes from: session pins in Redis (always) and latency from Prometheus (optional).

Both are behind small interfaces so the controller can be driven by recorded values in tests.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
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


class PrometheusLatency:
    """Queries Prometheus' HTTP API (``/api/v1/query``) for the orchestrators' and Triton's metrics.

    Triton pods are matched by ``pod=~"<deployment>-.*"`` (the label a ServiceMonitor/PodMonitor adds).
    A query that fails is logged and treated as unknown: sizing then falls back to sessions, which is
    safer than stopping the autoscaler because monitoring is down.
    """

    def __init__(self, base_url: str, window: str = "2m", timeout_seconds: float = 5.0) -> None:
        self._base = base_url.rstrip("/")
        self._window = window
        self._timeout = timeout_seconds

    def latency(self, deployment: str) -> Latency:
        w, pods = self._window, f'pod=~"{deployment}-.*"'
        stages = self._query(
            f"histogram_quantile(0.95, sum by (le, stage) (rate(minmo_stage_latency_seconds_bucket[{w}])))"
        )
        queue = self._query(
            f"sum(rate(nv_inference_queue_duration_us{{{pods}}}[{w}])) / 1e6"
            f" / sum(rate(nv_inference_request_success{{{pods}}}[{w}]))"
        )
        active = self._query("sum(minmo_active_sessions)")
        return Latency(
            stage_p95_seconds={labels.get("stage", ""): value for labels, value in stages if value == value},
            queue_seconds=next((value for _, value in queue if value == value), None),  # NaN: no requests
            active_sessions=next((int(value) for _, value in active), None),
        )

    def _query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        url = f"{self._base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as response:
                body = json.load(response)
        except (OSError, ValueError) as exc:
            log.warning("Prometheus query failed (%s): %s", exc, promql)
            return []
        if body.get("status") != "success":
            log.warning("Prometheus refused %s: %s", promql, body.get("error"))
            return []
        return [(item.get("metric", {}), float(item["value"][1])) for item in body["data"]["result"]]
