"""``minmo autoscale``: builds the autoscaler from command-line settings and runs it until SIGTERM."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

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


def default_namespace() -> str:
    return NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.exists() else "default"


def run(settings: AutoscaleSettings) -> None:
    """Raises ConfigError for a bad config file, before touching the cluster."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException
    from redis import Redis

    from orchestrator.autoscaler.controller import Autoscaler
    from orchestrator.autoscaler.demand import NoLatency, PrometheusLatency, RedisPins
    from orchestrator.autoscaler.kube import KubernetesPools
    from orchestrator.autoscaler.lease import LeaseElector

    scaler_config = load_config(settings.config_path)
    try:
        config.load_incluster_config()
    except ConfigException:
        config.load_kube_config()  # outside a cluster: the operator's kubeconfig (try it with --dry-run)
    api = client.ApiClient()
    namespace = settings.namespace or default_namespace()
    identity = settings.identity or socket.gethostname()
    elector = LeaseElector(
        client.CoordinationV1Api(api),
        namespace,
        settings.lease_name,
        identity,
        # Three intervals: one missed renewal (an API hiccup) does not hand leadership over.
        lease_seconds=max(15, round(3 * settings.interval_seconds)),
    )
    autoscaler = Autoscaler(
        config=scaler_config,
        cluster=KubernetesPools(client.AppsV1Api(api), client.CoreV1Api(api), namespace, settings.release),
        pins=RedisPins(Redis.from_url(settings.redis_url), scaler_config.redis_prefix, prune=not settings.dry_run),
        latency=PrometheusLatency(settings.prometheus_url) if settings.prometheus_url else NoLatency(),
        elector=elector,
        dry_run=settings.dry_run,
        clock=time.monotonic,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info(
        "autoscaler %s in namespace %s (release %s, %d pools, every %.0f s%s)",
        identity,
        namespace,
        settings.release,
        len(scaler_config.pools),
        settings.interval_seconds,
        ", DRY RUN: no writes" if settings.dry_run else "",
    )
    autoscaler.run(settings.interval_seconds, stop)
