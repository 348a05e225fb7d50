"""The session-aware autoscaler of the Triton pools (``minmo autoscale``): one leader sizes each pool from
its sessions and latency, scales up fast, down slowly, and drains a pod before it is removed."""

from orchestrator.autoscaler.config import AutoscalerConfig, ConfigError, PoolConfig, Slo, load_config, parse_config
from orchestrator.autoscaler.model import Decision, PodView, PoolMemory, PoolObservation
from orchestrator.autoscaler.policy import decide

__all__ = [
    "AutoscalerConfig",
    "ConfigError",
    "Decision",
    "PodView",
    "PoolConfig",
    "PoolMemory",
    "PoolObservation",
    "Slo",
    "decide",
    "load_config",
    "parse_config",
]
