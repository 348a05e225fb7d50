"""The autoscaler's configuration file (YAML), read into frozen dataclasses and checked field by field.

Every error names the offending field path (``pools[0].max_replicas``) and what is expected, because a
typo in a deployed ConfigMap otherwise shows up only as a pool that never scales.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or has a wrong field; the message says which."""


@dataclass(frozen=True)
class Slo:
    stage_p95_seconds: Mapping[str, float] = field(default_factory=dict)  # stage -> p95 latency bound
    queue_seconds: float | None = None  # bound on Triton's mean queue time per request (its metrics have no p95)


@dataclass(frozen=True)
class PoolConfig:
    name: str
    min_replicas: int = 1
    max_replicas: int = 4
    sessions_per_pod: int = 8  # concurrent sessions one pod serves within the SLO (measured with perf/)
    target_utilization: float = 0.75  # headroom so a new session rarely waits for a pod to start
    slo: Slo = field(default_factory=Slo)
    scale_up_window_seconds: float = 30.0
    scale_down_window_seconds: float = 300.0
    max_step_up: int = 4
    max_step_down: int = 1
    max_drain_seconds: float = 900.0
    deployment: str | None = None  # None: found by the pool label within the release


@dataclass(frozen=True)
class AutoscalerConfig:
    pools: tuple[PoolConfig, ...]
    redis_prefix: str = "minmo:"  # must match the orchestrators' key prefix


_POOL_NUMBERS: dict[str, type] = {
    "min_replicas": int,
    "max_replicas": int,
    "sessions_per_pod": int,
    "target_utilization": float,
    "scale_up_window_seconds": float,
    "scale_down_window_seconds": float,
    "max_step_up": int,
    "max_step_down": int,
    "max_drain_seconds": float,
}


def load_config(path: Path) -> AutoscalerConfig:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read autoscaler config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"autoscaler config {path} is not valid YAML: {exc}") from exc
    return parse_config(raw, source=str(path))


def parse_config(raw: Any, source: str = "config") -> AutoscalerConfig:
    where = f"{source}: "
    top = _mapping(raw, where + "top level", {"pools", "redis_prefix"})
    prefix = top.get("redis_prefix", "minmo:")
    if not isinstance(prefix, str) or not prefix:
        raise ConfigError(f"{where}`redis_prefix` must be a non-empty string like `minmo:`")
    pools = top.get("pools")
    if not isinstance(pools, list) or not pools:
        raise ConfigError(f"{where}`pools` must be a non-empty list of pools")
    parsed = tuple(_pool(item, f"{where}pools[{i}]") for i, item in enumerate(pools))
    names = [pool.name for pool in parsed]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{where}pool names must be unique; repeated: {', '.join(duplicates)}")
    return AutoscalerConfig(parsed, prefix)


def _pool(raw: Any, where: str) -> PoolConfig:
    item = _mapping(raw, where, {"name", "deployment", "slo", *_POOL_NUMBERS})
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name must be a non-empty string (the pool's name, e.g. `all`)")
    deployment = item.get("deployment")
    if deployment is not None and not isinstance(deployment, str):
        raise ConfigError(f"{where}.deployment must be a Deployment name (string)")
    numbers = {key: _number(item[key], kind, f"{where}.{key}") for key, kind in _POOL_NUMBERS.items() if key in item}
    pool = PoolConfig(name=name, deployment=deployment, slo=_slo(item.get("slo", {}), f"{where}.slo"), **numbers)
    if pool.min_replicas < 1:
        # A pool with no pod refuses a new session before pinning it, so no demand ever shows up to scale it back.
        raise ConfigError(
            f"{where}.min_replicas must be at least 1, got {pool.min_replicas}: scale to zero is not supported "
            "(with no pod a pool refuses new sessions before they are pinned, so demand would stay 0 and the "
            "pool would never scale up again)"
        )
    if pool.min_replicas > pool.max_replicas:
        raise ConfigError(
            f"{where}: need min_replicas <= max_replicas, got min {pool.min_replicas}, max {pool.max_replicas}"
        )
    for key in ("sessions_per_pod", "max_step_up", "max_step_down"):
        if getattr(pool, key) < 1:
            raise ConfigError(f"{where}.{key} must be at least 1, got {getattr(pool, key)}")
    if not 0 < pool.target_utilization <= 1:
        raise ConfigError(f"{where}.target_utilization must be in (0, 1], got {pool.target_utilization}")
    for key in ("scale_up_window_seconds", "scale_down_window_seconds", "max_drain_seconds"):
        if getattr(pool, key) < 0:
            raise ConfigError(f"{where}.{key} must not be negative, got {getattr(pool, key)}")
    return pool


def _slo(raw: Any, where: str) -> Slo:
    item = _mapping(raw, where, {"stage_p95_seconds", "queue_seconds"})
    stages = _mapping(item.get("stage_p95_seconds", {}), f"{where}.stage_p95_seconds", None)
    bounds = {
        str(stage): _number(value, float, f"{where}.stage_p95_seconds.{stage}") for stage, value in stages.items()
    }
    queue = item.get("queue_seconds")
    slo = Slo(bounds, None if queue is None else _number(queue, float, f"{where}.queue_seconds"))
    if any(value <= 0 for value in bounds.values()) or (slo.queue_seconds is not None and slo.queue_seconds <= 0):
        raise ConfigError(f"{where}: latency bounds must be positive seconds")
    return slo


def _mapping(raw: Any, where: str, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    if allowed is not None:
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {', '.join(map(str, unknown))}; allowed: {', '.join(sorted(allowed))}"
            )
    return raw


def _number(value: Any, kind: type, where: str) -> Any:
    # bool is an int subclass; `true` as a replica count is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        expected = "an integer" if kind is int else "a number"
        raise ConfigError(f"{where} must be {expected}, got {value!r}")
    return kind(value)
