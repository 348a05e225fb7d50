"""``minmo autoscale``'s command line: the flags and the settings they make.

Kept apart from the heavy modules, so ``minmo --help`` loads no Kubernetes client. The Redis credential
flags have the same names and meaning as ``minmo serve``'s, so the chart passes both the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.autoscaler.app import AutoscaleSettings
from orchestrator.autoscaler.bounds import Bounds

DEFAULT_HEARTBEAT = Path("/tmp/minmo-autoscaler/heartbeat")


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_autoscale_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", help="namespace of the pools (default: the pod's own namespace)")
    parser.add_argument("--release", required=True, help="Helm release whose pool Deployments to scale")
    parser.add_argument("--config", type=Path, required=True, help="autoscaler YAML (pools, min/max, SLOs)")
    parser.add_argument("--dry-run", action="store_true", help="decide and log, write nothing")
    parser.add_argument("--lease-name", default="minmo-autoscaler", help="coordination.k8s.io Lease to lead")
    parser.add_argument("--identity", help="leader-election identity (default: the hostname = pod name)")
    parser.add_argument("--interval-seconds", type=_positive, default=15.0, help="seconds between decisions")
    redis = parser.add_argument_group("Redis (session pins; the same credentials as `minmo serve`)")
    redis.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL, without a password")
    redis.add_argument("--redis-password-file", type=Path, help="file holding the Redis password")
    redis.add_argument("--redis-tls", action="store_true", help="TLS to Redis (a rediss:// URL does the same)")
    redis.add_argument("--redis-ca", type=Path, help="CA bundle that signs Redis's certificate")
    prometheus = parser.add_argument_group("Prometheus (optional: stage latency and Triton queue time)")
    prometheus.add_argument("--prometheus-url", help="Prometheus base URL, e.g. http://prometheus-operated:9090")
    prometheus.add_argument(
        "--orchestrator-deployment",
        help="the orchestrators' Deployment: latency and active sessions are read from its pods only "
        "(default: every pod in the namespace)",
    )
    limits = parser.add_argument_group("bounds (every call has a timeout; a round has a deadline)")
    defaults = Bounds()
    limits.add_argument("--kube-timeout-seconds", type=_positive, default=defaults.kube_seconds)
    limits.add_argument("--redis-timeout-seconds", type=_positive, default=defaults.redis_seconds)
    limits.add_argument("--prometheus-timeout-seconds", type=_positive, default=defaults.prometheus_seconds)
    limits.add_argument("--round-timeout-seconds", type=_positive, default=defaults.round_seconds)
    limits.add_argument(
        "--heartbeat-file",
        type=Path,
        default=DEFAULT_HEARTBEAT,
        help="written after every round; `python -m orchestrator.autoscaler.heartbeat FILE` is the liveness probe",
    )


def autoscale_settings(args: argparse.Namespace) -> AutoscaleSettings:
    return AutoscaleSettings(
        namespace=args.namespace,
        release=args.release,
        config_path=args.config,
        redis_url=args.redis,
        dry_run=args.dry_run,
        lease_name=args.lease_name,
        identity=args.identity,
        interval_seconds=args.interval_seconds,
        prometheus_url=args.prometheus_url,
        orchestrator_deployment=args.orchestrator_deployment,
        redis_password_file=args.redis_password_file,
        redis_tls=args.redis_tls,
        redis_ca=args.redis_ca,
        bounds=Bounds(
            kube_seconds=args.kube_timeout_seconds,
            redis_seconds=args.redis_timeout_seconds,
            prometheus_seconds=args.prometheus_timeout_seconds,
            round_seconds=args.round_timeout_seconds,
        ),
        heartbeat_file=args.heartbeat_file,
    )
