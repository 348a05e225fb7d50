"""The autoscaler's Kubernetes calls, made by the real ``kubernetes`` client against FakeKubernetesApiServer
(a fake: no cluster runs here; it validates every body against the Kubernetes OpenAPI schema) with session
pins in the real Redis at 127.0.0.1:6379 (unique key prefix)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes import client
from redis import Redis

from orchestrator.autoscaler.config import PoolConfig, parse_config
from orchestrator.autoscaler.controller import Autoscaler
from orchestrator.autoscaler.demand import NoLatency, RedisPins
from orchestrator.autoscaler.kube import ClusterError, KubernetesPools, bounded_api_client
from orchestrator.autoscaler.lease import LeaseElector
from tests.integration.autoscaler_fixtures import NS, REDIS_URL
from tests.integration.fake_kube_api import FakeKubernetesApiServer, deployment, pod

LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
SCALE_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/demo-triton-all/scale"


class Clock:
    """Monotonic and wall clocks the test advances by hand, so lease expiry needs no sleeping. The wall clock
    sits on whole seconds, the case the client's own time serialisation gets wrong for a MicroTime."""

    def __init__(self) -> None:
        self.seconds = 1000.0
        self.start = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.seconds

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds - 1000.0)


def elector(api: FakeKubernetesApiServer, identity: str, clock: Clock, lease_seconds: int = 45) -> LeaseElector:
    coordination = client.CoordinationV1Api(bounded_api_client(api.configuration()))
    return LeaseElector(coordination, NS, "minmo-autoscaler", identity, lease_seconds, clock.monotonic, clock.wall)


def renewed_at(recorded_time: str) -> datetime:
    """A MicroTime as sent: six fractional digits (the fake refuses anything else), within 1 µs of the clock."""
    return datetime.fromisoformat(recorded_time).replace(microsecond=0)


def test_lease_is_created_then_renewed_by_its_holder(api: FakeKubernetesApiServer) -> None:
    clock = Clock()
    leader = elector(api, "scaler-a", clock)
    assert leader.try_acquire_or_renew()
    clock.seconds += 15
    assert leader.try_acquire_or_renew()

    create, update = api.writes()
    assert (create.method, create.path) == ("POST", LEASE_PATH)
    assert create.body["spec"]["holderIdentity"] == "scaler-a"
    assert create.body["spec"]["leaseTransitions"] == 0
    assert create.body["spec"]["leaseDurationSeconds"] == 45
    assert create.body["spec"]["acquireTime"] == create.body["spec"]["renewTime"]
    assert (update.method, update.path) == ("PUT", f"{LEASE_PATH}/minmo-autoscaler")
    assert update.body["spec"]["holderIdentity"] == "scaler-a"
    assert update.body["spec"]["acquireTime"] == create.body["spec"]["acquireTime"]
    assert renewed_at(update.body["spec"]["renewTime"]) == clock.wall()
    assert update.body["spec"]["leaseTransitions"] == 0
    assert update.body["metadata"]["resourceVersion"]  # optimistic concurrency: a stale write gets 409


def test_a_live_holder_is_respected_until_its_lease_expires(api: FakeKubernetesApiServer) -> None:
    clock = Clock()
    holder = elector(api, "scaler-b", clock)
    assert holder.try_acquire_or_renew()
    candidate = elector(api, "scaler-a", clock)

    assert not candidate.try_acquire_or_renew()
    clock.seconds += 30
    assert holder.try_acquire_or_renew()  # renewed: the candidate's wait starts again
    clock.seconds += 30
    assert not candidate.try_acquire_or_renew()
    writes_before_takeover = len(api.writes())
    clock.seconds += 46  # scaler-b stopped renewing more than leaseDurationSeconds ago
    assert candidate.try_acquire_or_renew()
    assert not holder.try_acquire_or_renew()

    takeover = api.writes()[writes_before_takeover]
    assert takeover.method == "PUT"
    assert takeover.body["spec"]["holderIdentity"] == "scaler-a"
    assert takeover.body["spec"]["leaseTransitions"] == 1
    assert renewed_at(takeover.body["spec"]["acquireTime"]) == clock.wall()
    assert api.writes()[writes_before_takeover + 1 :] == []  # the old holder wrote nothing after losing


def pin(redis: Redis, prefix: str, pool: str, pod_name: str, session: str) -> None:
    redis.hset(f"{prefix}session:{session}:pods", pool, pod_name)
    redis.sadd(f"{prefix}pool:{pool}:pod:{pod_name}:sessions", session)


def three_pod_pool(api: FakeKubernetesApiServer, redis: Redis, prefix: str) -> None:
    """p-a holds 2 sessions, p-b is drained (draining, 0 live sessions, 1 stale member), p-c holds 1."""
    api.put("deployments", deployment("demo-triton-all", 3, "all"))
    for name, ip in (("p-a", "10.0.0.1"), ("p-b", "10.0.0.2"), ("p-c", "10.0.0.3")):
        api.put("pods", pod(name, "all", ip=ip))
    pin(redis, prefix, "all", "p-a", "s1")
    pin(redis, prefix, "all", "p-a", "s2")
    pin(redis, prefix, "all", "p-c", "s3")
    redis.sadd(f"{prefix}pool:all:pod:p-b:sessions", "crashed-session")  # its pin hash expired
    redis.sadd(f"{prefix}pool:all:draining", "p-b")


def autoscaler(api: FakeKubernetesApiServer, redis: Redis, prefix: str, dry_run: bool, clock: Clock) -> Autoscaler:
    config = parse_config(
        {
            "redis_prefix": prefix,
            "pools": [{"name": "all", "min_replicas": 1, "max_replicas": 4, "scale_down_window_seconds": 0}],
        }
    )
    api_client = bounded_api_client(api.configuration())
    return Autoscaler(
        config=config,
        cluster=KubernetesPools(client.AppsV1Api(api_client), client.CoreV1Api(api_client), NS, "demo"),
        pins=RedisPins(redis, prefix, prune=not dry_run),
        latency=NoLatency(),
        elector=elector(api, "scaler-a", clock),
        dry_run=dry_run,
        clock=clock.monotonic,
    )


def test_drained_pod_gets_low_deletion_cost_then_replicas_drop(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str
) -> None:
    three_pod_pool(api, redis, prefix)
    [decision] = autoscaler(api, redis, prefix, dry_run=False, clock=Clock()).tick()

    assert decision.remove == ("p-b",) and decision.start_draining == ("p-c",) and decision.replicas == 2
    scale_read = next(r for r in api.requests if r.method == "GET" and r.path == SCALE_PATH)
    assert scale_read
    observed_version = api.objects[("deployments", "demo-triton-all")]["metadata"]["resourceVersion"]
    lease, cost, scale = api.writes()
    assert (lease.method, lease.path) == ("POST", LEASE_PATH)
    assert (cost.method, cost.path) == ("PATCH", f"/api/v1/namespaces/{NS}/pods/p-b")
    assert cost.body == {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-1000"}}}
    assert cost.content_type == "application/merge-patch+json"
    assert cost.query["fieldManager"] == ["minmo-autoscaler"]
    assert (scale.method, scale.path, scale.content_type) == ("PATCH", SCALE_PATH, "application/merge-patch+json")
    # Optimistic concurrency: the write names the version the replicas were read at (the one before it).
    assert scale.body["spec"] == {"replicas": 2}
    assert int(scale.body["metadata"]["resourceVersion"]) < int(observed_version)
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 2
    annotations = {name: api.objects[("pods", name)]["metadata"].get("annotations", {}) for name in ("p-a", "p-c")}
    assert annotations == {"p-a": {}, "p-c": {}}  # pods holding sessions keep the default cost
    assert {m.decode() for m in redis.smembers(f"{prefix}pool:all:draining")} == {"p-b", "p-c"}
    assert redis.smembers(f"{prefix}pool:all:pod:p-b:sessions") == set()  # the stale member was pruned


def test_dry_run_decides_the_same_and_writes_nothing(api: FakeKubernetesApiServer, redis: Redis, prefix: str) -> None:
    three_pod_pool(api, redis, prefix)
    [decision] = autoscaler(api, redis, prefix, dry_run=True, clock=Clock()).tick()

    assert decision.remove == ("p-b",) and decision.start_draining == ("p-c",) and decision.replicas == 2
    assert api.writes() == []
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 3
    assert {m.decode() for m in redis.smembers(f"{prefix}pool:all:draining")} == {"p-b"}
    assert redis.smembers(f"{prefix}pool:all:pod:p-b:sessions") == {b"crashed-session"}


def test_burst_scales_up_through_the_scale_subresource(api: FakeKubernetesApiServer, redis: Redis, prefix: str) -> None:
    api.put("deployments", deployment("demo-triton-all", 1, "all"))
    api.put("pods", pod("p-a", "all"))
    for i in range(20):
        pin(redis, prefix, "all", "p-a", f"s{i}")
    scaler = autoscaler(api, redis, prefix, dry_run=False, clock=Clock())
    [decision] = scaler.tick()

    assert decision.replicas == 4  # ceil(20 / (8 * 0.75)) = 4, within max_step_up
    assert [(w.method, w.path, w.body["spec"]) for w in api.writes()[1:]] == [("PATCH", SCALE_PATH, {"replicas": 4})]
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 4


def test_a_follower_reads_nothing_but_the_lease(api: FakeKubernetesApiServer, redis: Redis, prefix: str) -> None:
    three_pod_pool(api, redis, prefix)
    clock = Clock()
    assert elector(api, "scaler-b", clock).try_acquire_or_renew()
    assert autoscaler(api, redis, prefix, dry_run=False, clock=clock).tick() == []
    assert all("/leases" in r.path for r in api.requests)
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 3


def test_pool_deployment_is_found_by_release_and_pool_labels(api: FakeKubernetesApiServer) -> None:
    api.put("deployments", deployment("demo-triton-all", 1, "all"))
    api.put("deployments", deployment("other-triton-all", 1, "all", release="other"))
    api_client = bounded_api_client(api.configuration())
    pools = KubernetesPools(client.AppsV1Api(api_client), client.CoreV1Api(api_client), NS, "demo")

    assert pools.deployment_for("all", None) == "demo-triton-all"
    assert api.requests[-1].query["labelSelector"] == ["app.kubernetes.io/instance=demo,minmo-serve/pool=all"]
    with pytest.raises(ClusterError, match=r"expected one Deployment labelled .*found none"):
        pools.deployment_for("speech", None)
    assert pools.deployment_for("speech", PoolConfig("speech", deployment="named").deployment) == "named"


def kubeconfig_for(api: FakeKubernetesApiServer, path: Path) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
        "users": [{"name": "fake", "user": {"token": "fake-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NS}}],
        "current-context": "fake",
    }
    path.write_text(json.dumps(config))
    return path


@contextmanager
def minmo_autoscale(api: FakeKubernetesApiServer, prefix: str, tmp_path: Path, *extra: str) -> Iterator[list[str]]:
    """Runs the real `minmo autoscale` process; yields its log lines as they arrive, then SIGTERMs it."""
    config = tmp_path / "autoscaler.yaml"
    config.write_text(f'redis_prefix: "{prefix}"\npools: [{{name: all, scale_down_window_seconds: 0}}]\n')
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_for(api, tmp_path / "kubeconfig")), "HOSTNAME": "scaler-x"}
    command = [sys.executable, "-m", "orchestrator.cli", "autoscale", "--release", "demo", "--namespace", NS]
    command += ["--config", str(config), "--redis", REDIS_URL, "--interval-seconds", "0.5"]
    command += ["--heartbeat-file", str(tmp_path / "heartbeat"), *extra]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        yield lines
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "".join(lines)
        reader.join(timeout=5)


def wait_for(lines: list[str], needle: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(needle in line for line in lines):
        assert time.monotonic() < deadline, f"no {needle!r} in the log:\n{''.join(lines)}"
        time.sleep(0.1)


@pytest.mark.slow
def test_minmo_autoscale_dry_run_logs_the_plan_and_writes_nothing(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str, tmp_path: Path
) -> None:
    three_pod_pool(api, redis, prefix)
    with minmo_autoscale(api, prefix, tmp_path, "--dry-run") as lines:
        wait_for(lines, "dry-run: pool all (demo-triton-all)")
    logged = next(line for line in lines if "dry-run: pool all" in line)
    assert "replicas 3 -> 2" in logged and "remove ['p-b']" in logged
    assert api.writes() == []


@pytest.mark.slow
def test_minmo_autoscale_leads_scales_and_releases_its_lease(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str, tmp_path: Path
) -> None:
    three_pod_pool(api, redis, prefix)
    with minmo_autoscale(api, prefix, tmp_path) as lines:
        wait_for(lines, "replicas 3 -> 2")
        # The liveness probe the chart runs passes while the loop goes round.
        probe = [sys.executable, "-m", "orchestrator.autoscaler.heartbeat", str(tmp_path / "heartbeat")]
        checked = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
        assert checked.returncode == 0, checked.stderr
    writes = [(w.method, w.path) for w in api.writes()]
    assert writes[:3] == [
        ("POST", LEASE_PATH),
        ("PATCH", f"/api/v1/namespaces/{NS}/pods/p-b"),
        ("PATCH", SCALE_PATH),
    ]
    release = api.writes()[-1]
    assert (release.method, release.path) == ("PUT", f"{LEASE_PATH}/minmo-autoscaler")
    assert release.body["spec"].get("holderIdentity") is None  # handed over at once on SIGTERM
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 2
