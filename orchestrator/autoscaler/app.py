"""``minmo autoscale``: builds the autoscaler from command-line settings and runs it until SIGTERM."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.autoscaler.bounds import Bounds
from orchestrator.autoscaler.config import load_config

log = logging.getLogger(__name__)

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class AutoscaleSettings:
    namespace: str | None
    release: str
    config_path: Path
    redis_url: str
    dry_run: bool
    lease_name: str
    identity: str | None
    interval_seconds: float
    prometheus_url: str | None
    orchestrator_deployment: str | None = None
    redis_password_file: Path | None = None
    redis_tls: bool = False
    redis_ca: Path | None = None
    bounds: Bounds = field(default_factory=Bounds)
    heartbeat_file: Path | None = None


def default_namespace() -> str:
    return NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.exists() else "default"


def lease_seconds(settings: AutoscaleSettings) -> int:
    """Three intervals (one missed renewal, an API hiccup, does not hand leadership over), and always long
    enough that a renewal and a write fit in it with room to spare, or the fence would refuse every write."""
    return max(15, round(3 * settings.interval_seconds), round(3 * settings.bounds.kube_seconds))


def run(settings: AutoscaleSettings) -> None:
    """Raises ConfigError for a bad config file or credentials, before touching the cluster."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    from orchestrator.autoscaler.controller import Autoscaler
    from orchestrator.autoscaler.demand import NoLatency, PrometheusLatency, RedisPins
    from orchestrator.autoscaler.heartbeat import Heartbeat
    from orchestrator.autoscaler.kube import KubernetesPools, bounded_api_client
    from orchestrator.autoscaler.lease import LeaseElector
    from orchestrator.autoscaler.redis_client import build_redis

    scaler_config = load_config(settings.config_path)
    bounds = settings.bounds
    redis = build_redis(
        settings.redis_url,
        password_file=settings.redis_password_file,
        tls=settings.redis_tls,
        ca_file=settings.redis_ca,
        timeout_seconds=bounds.redis_seconds,
    )
    try:
        config.load_incluster_config()
    except ConfigException:
        config.load_kube_config()  # outside a cluster: the operator's kubeconfig (try it with --dry-run)
    api = bounded_api_client()
    namespace = settings.namespace or default_namespace()
    identity = settings.identity or socket.gethostname()
    elector = LeaseElector(
        client.CoordinationV1Api(api),
        namespace,
        settings.lease_name,
        identity,
        lease_seconds=lease_seconds(settings),
        timeout_seconds=bounds.kube_seconds,
    )
    latency = (
        PrometheusLatency(
            settings.prometheus_url,
            namespace,
            settings.orchestrator_deployment,
            timeout_seconds=bounds.prometheus_seconds,
            backoff_seconds=bounds.prometheus_backoff_seconds,
        )
        if settings.prometheus_url
        else NoLatency()
    )
    autoscaler = Autoscaler(
        config=scaler_config,
        cluster=KubernetesPools(
            client.AppsV1Api(api), client.CoreV1Api(api), namespace, settings.release, bounds.kube_seconds
        ),
        pins=RedisPins(redis, scaler_config.redis_prefix, prune=not settings.dry_run),
        latency=latency,
        elector=elector,
        dry_run=settings.dry_run,
        clock=time.monotonic,
        bounds=bounds,
    )
    heartbeat = (
        Heartbeat(settings.heartbeat_file, bounds.heartbeat_max_age(settings.interval_seconds))
        if settings.heartbeat_file
        else None
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info(
        "autoscaler %s in namespace %s (release %s, %d pools, every %.0f s, lease %d s%s)",
        identity,
        namespace,
        settings.release,
        len(scaler_config.pools),
        settings.interval_seconds,
        elector.lease_seconds,
        ", DRY RUN: no writes" if settings.dry_run else "",
    )
    autoscaler.run(settings.interval_seconds, stop, heartbeat)
