"""The autoscaler when its dependencies misbehave: a hung API server, a hung Redis, a hung Prometheus, a lease
lost in the middle of a round, someone else scaling the pool, a pool at zero replicas.

Real ``kubernetes`` client against FakeKubernetesApiServer (a fake: no cluster runs here; it validates every
body like an API server), real Redis at 127.0.0.1:6379 under a unique prefix (or a private TLS one), and
SilentServer (a real listener that never answers) for the hung dependencies. Every bound is asserted as a
wall-clock time, because "the round fails within its timeout" is the behaviour an operator relies on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from redis import Redis
from redis.exceptions import RedisError

from orchestrator.autoscaler.bounds import Bounds, RoundTimeout
from orchestrator.autoscaler.config import parse_config
from orchestrator.autoscaler.controller import Autoscaler
from orchestrator.autoscaler.demand import LatencySource, NoLatency, PrometheusLatency, RedisPins
from orchestrator.autoscaler.heartbeat import Heartbeat, problem
from orchestrator.autoscaler.kube import KubernetesPools, bounded_api_client
from orchestrator.autoscaler.lease import LeaseElector
from orchestrator.autoscaler.redis_client import build_redis
from orchestrator.devstack.triton_launcher import free_port
from tests.integration.autoscaler_fixtures import NS
from tests.integration.fake_kube_api import FakeKubernetesApiServer, Recorded, deployment, pod
from tests.integration.fake_prometheus import FakePrometheus
from tests.integration.pki import TestCA
from tests.integration.silent_server import SilentServer

LEASE = "minmo-autoscaler"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
SCALE_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/demo-triton-all/scale"
PODS_PATH = f"/api/v1/namespaces/{NS}/pods"
FAST = Bounds(kube_seconds=1.0, redis_seconds=0.5, prometheus_seconds=0.5, round_seconds=10.0)


class Clock:
    """A monotonic clock the test can jump (a long GC pause, a SIGSTOP), on top of real time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def wall(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)


def pin(redis: Redis, prefix: str, pod_name: str, session: str) -> None:
    redis.hset(f"{prefix}session:{session}:pods", "all", pod_name)
    redis.sadd(f"{prefix}pool:all:pod:{pod_name}:sessions", session)


def three_pod_pool(api: FakeKubernetesApiServer, redis: Redis, prefix: str) -> None:
    """p-a holds 2 sessions, p-b is drained (draining, 0 live sessions, 1 stale member), p-c holds 1: the round
    marks p-c draining, lowers p-b's deletion cost and drops replicas 3 -> 2 (see test_autoscaler_kube.py)."""
    api.put("deployments", deployment("demo-triton-all", 3, "all"))
    for name in ("p-a", "p-b", "p-c"):
        api.put("pods", pod(name, "all"))
    for pod_name, session in (("p-a", "s1"), ("p-a", "s2"), ("p-c", "s3")):
        pin(redis, prefix, pod_name, session)
    redis.sadd(f"{prefix}pool:all:pod:p-b:sessions", "crashed-session")
    redis.sadd(f"{prefix}pool:all:draining", "p-b")


def one_busy_pod(api: FakeKubernetesApiServer, redis: Redis, prefix: str) -> None:
    """One pod with 20 sessions: the round scales 1 -> 4 (ceil(20 / (8 * 0.75)))."""
    api.put("deployments", deployment("demo-triton-all", 1, "all"))
    api.put("pods", pod("p-a", "all"))
    for i in range(20):
        pin(redis, prefix, "p-a", f"s{i}")


def make_scaler(
    api: FakeKubernetesApiServer,
    pins: RedisPins,
    prefix: str,
    *,
    clock: Clock | None = None,
    latency: LatencySource | None = None,
    bounds: Bounds = FAST,
    pools: list[dict[str, Any]] | None = None,
) -> Autoscaler:
    clock = clock or Clock()
    config = parse_config(
        {"redis_prefix": prefix, "pools": pools or [{"name": "all", "max_replicas": 4, "scale_down_window_seconds": 0}]}
    )
    api_client = bounded_api_client(api.configuration())
    coordination = client.CoordinationV1Api(api_client)
    return Autoscaler(
        config=config,
        cluster=KubernetesPools(client.AppsV1Api(api_client), client.CoreV1Api(api_client), NS, "demo", 1.0),
        pins=pins,
        latency=latency or NoLatency(),
        elector=LeaseElector(coordination, NS, LEASE, "scaler-a", 45, clock.monotonic, clock.wall, 1.0),
        dry_run=False,
        clock=clock.monotonic,
        bounds=bounds,
    )


def written_paths(api: FakeKubernetesApiServer) -> list[tuple[str, str]]:
    return [(w.method, w.path) for w in api.writes()]


# ---- a hung API server ------------------------------------------------------------------------------------------


def test_a_hung_api_server_fails_the_round_within_its_timeout_and_the_loop_goes_on(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str, tmp_path: Path
) -> None:
    one_busy_pod(api, redis, prefix)
    scaler = make_scaler(api, RedisPins(redis, prefix, prune=True), prefix)
    api.hang(lambda request: True)  # accepts every request, answers none

    started = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)timed? ?out"):
        scaler.tick()
    assert time.monotonic() - started < FAST.kube_seconds + 1.0  # one request, not retried

    # The loop goes round regardless, and says so in its heartbeat (the liveness probe's file).
    heartbeat = Heartbeat(tmp_path / "heartbeat", FAST.heartbeat_max_age(0.2))
    stop = threading.Event()
    loop = threading.Thread(target=scaler.run, args=(0.2, stop, heartbeat), daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 20
        seen: set[str] = set()
        while not {"failed", "ok"} <= seen:
            assert time.monotonic() < deadline, f"rounds seen: {seen}"
            record = json.loads(heartbeat.path.read_text()) if heartbeat.path.exists() else {"round": "none"}
            seen.add(record["round"].split(":")[0])
            assert problem(heartbeat.path, time.time()) is None or record["round"] == "none"
            if "failed" in seen:
                api.release()  # the API server comes back: the next round scales
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(timeout=20)
    assert not loop.is_alive()
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 4


def test_a_hung_scale_write_costs_one_timeout_and_the_next_round_retries_it(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str
) -> None:
    one_busy_pod(api, redis, prefix)
    scaler = make_scaler(api, RedisPins(redis, prefix, prune=True), prefix)
    api.hang(lambda request: request.method == "PATCH")
    started = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)timed? ?out"):
        scaler.tick()
    assert time.monotonic() - started < 2 * FAST.kube_seconds + 1.0
    api.release()
    [decision] = scaler.tick()
    assert decision.replicas == 4
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 4


def test_a_round_that_outlives_its_deadline_stops_before_its_next_call(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str
) -> None:
    one_busy_pod(api, redis, prefix)
    clock = Clock()
    scaler = make_scaler(api, RedisPins(redis, prefix, prune=True), prefix, clock=clock)

    def slow_pods_list(request: Recorded) -> None:
        if request.method == "GET" and request.path == PODS_PATH:
            clock.offset += FAST.round_seconds + 1  # the round is now past its deadline

    api.before = slow_pods_list
    with pytest.raises(RoundTimeout, match="stopped before counting pins"):
        scaler.tick()
    assert written_paths(api) == [("POST", LEASE_PATH)]


# ---- a hung Redis -----------------------------------------------------------------------------------------------


def test_a_hung_redis_fails_the_round_within_its_socket_timeout_and_writes_nothing(
    api: FakeKubernetesApiServer, prefix: str
) -> None:
    api.put("deployments", deployment("demo-triton-all", 3, "all"))
    for name in ("p-a", "p-b", "p-c"):
        api.put("pods", pod(name, "all"))
    with SilentServer().running() as silent:
        hung = build_redis(f"redis://{silent.address}/0", timeout_seconds=FAST.redis_seconds)
        scaler = make_scaler(api, RedisPins(hung, prefix, prune=True), prefix)
        started = time.monotonic()
        with pytest.raises(RedisError):
            scaler.tick()
        elapsed = time.monotonic() - started
    # Not retried (redis-py's default retries three times, its handshake again inside each): one socket timeout.
    assert elapsed < FAST.redis_seconds + 1.0, elapsed
    assert written_paths(api) == [("POST", LEASE_PATH)]
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 3


TLS_PASSWORD = "autoscaler-test-password"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, TestCA]]:
    """A private ``redis-server`` speaking only TLS, with a certificate from a private CA, and a password."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    ca = TestCA(tmp_path)
    issued = ca.issue("localhost", server=True, cert_path=tmp_path / "redis.crt", key_path=tmp_path / "redis.key")
    port = free_port()
    command = [server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    command += ["--tls-cert-file", str(issued.cert), "--tls-key-file", str(issued.key)]
    command += ["--tls-ca-cert-file", str(ca.pem_path), "--tls-auth-clients", "no"]
    command += ["--requirepass", TLS_PASSWORD, "--save", "", "--dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                Redis(port=port, password=TLS_PASSWORD, ssl=True, ssl_ca_certs=str(ca.pem_path)).ping()
                break
            except RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port, ca
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_rediss_with_a_private_ca_and_a_password_file_works_and_fails_without_the_ca(
    tls_redis: tuple[int, TestCA], tmp_path: Path, prefix: str
) -> None:
    """What the chart gives the autoscaler for an external `rediss://` Redis: the CA file and the password file."""
    port, ca = tls_redis
    password_file = tmp_path / "password"
    password_file.write_text(TLS_PASSWORD + "\n")
    url = f"rediss://localhost:{port}/0"
    with_ca = build_redis(url, password_file=password_file, ca_file=ca.pem_path, timeout_seconds=2)
    pins = RedisPins(with_ca, prefix, prune=False)
    pins.mark_draining("all", ["p-a"], [])
    assert pins.draining("all") == {"p-a"}
    assert pins.live_sessions("all", ["p-a"]) == {"p-a": 0}

    without_ca = build_redis(url, password_file=password_file, timeout_seconds=2)
    with pytest.raises(RedisError, match=r"(?i)certificate"):
        RedisPins(without_ca, prefix, prune=False).draining("all")


# ---- a hung Prometheus ----------------------------------------------------------------------------------------


def test_a_hung_prometheus_costs_one_timeout_and_the_round_still_scales_from_sessions(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str
) -> None:
    one_busy_pod(api, redis, prefix)
    api.put("deployments", deployment("demo-triton-other", 1, "other"))
    with SilentServer().running() as silent:
        latency = PrometheusLatency(f"http://{silent.address}", NS, "demo-orchestrator", timeout_seconds=0.5)
        pools = [
            {"name": "all", "max_replicas": 4, "scale_down_window_seconds": 0},
            {"name": "other", "deployment": "demo-triton-other", "max_replicas": 4},
        ]
        scaler = make_scaler(api, RedisPins(redis, prefix, prune=True), prefix, latency=latency, pools=pools)
        started = time.monotonic()
        decisions = scaler.tick()
        elapsed = time.monotonic() - started
    assert [d.replicas for d in decisions] == [4, 1]  # sized from the pins alone
    assert elapsed < FAST.prometheus_seconds + 2.0, elapsed  # one timeout for the round, not six


# ---- a lease lost mid-round -------------------------------------------------------------------------------------


def test_a_lease_taken_over_mid_round_stops_every_write(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str
) -> None:
    """Between the round's renewal and its writes a standby took the lease (this replica was paused past the
    lease, say): the drain mark, the deletion cost, the prune and the scale write must all not happen."""
    three_pod_pool(api, redis, prefix)
    scaler = make_scaler(api, RedisPins(redis, prefix, prune=True), prefix)

    def standby_takes_over(request: Recorded) -> None:
        if request.method == "GET" and request.path == PODS_PATH:

            def take(lease: dict[str, Any]) -> None:
                lease["spec"]["holderIdentity"] = "scaler-b"
                lease["spec"]["leaseTransitions"] += 1

            api.update("leases", LEASE, take)

    api.before = standby_takes_over
    assert scaler.tick() == []
    assert written_paths(api) == [("POST", LEASE_PATH)]
    assert not scaler.elector.is_leader and scaler.memory == {}
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 3
    assert "annotations" not in api.objects[("pods", "p-b")]["metadata"]
    assert {m.decode() for m in redis.smembers(f"{prefix}pool:all:draining")} == {"p-b"}
    assert redis.smembers(f"{prefix}pool:all:pod:p-b:sessions") == {b"crashed-session"}  # not even pruned


def test_a_pause_longer_than_the_lease_stops_writes_without_asking_the_api_server(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str
) -> None:
    """The process stood still (SIGSTOP, a long GC) after renewing: by its own clock the standby may already
    lead, so it writes nothing, even though the Lease object still names it."""
    three_pod_pool(api, redis, prefix)
    clock = Clock()
    long_rounds = Bounds(kube_seconds=1.0, redis_seconds=0.5, prometheus_seconds=0.5, round_seconds=120)
    scaler = make_scaler(api, RedisPins(redis, prefix, prune=True), prefix, clock=clock, bounds=long_rounds)

    def pause(request: Recorded) -> None:
        if request.method == "GET" and request.path == PODS_PATH:
            clock.offset += 50  # longer than the 45 s lease

    api.before = pause
    assert scaler.tick() == []
    assert written_paths(api) == [("POST", LEASE_PATH)]
    lease_reads_after_pods = [
        r for r in api.requests[[r.path for r in api.requests].index(PODS_PATH) :] if "/leases" in r.path
    ]
    assert lease_reads_after_pods == []
    assert api.objects[("leases", LEASE)]["spec"]["holderIdentity"] == "scaler-a"


# ---- someone else scales ---------------------------------------------------------------------------------------


def test_a_hand_scale_between_read_and_write_is_not_overwritten(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str
) -> None:
    one_busy_pod(api, redis, prefix)
    scaler = make_scaler(api, RedisPins(redis, prefix, prune=True), prefix)

    def kubectl_scale(request: Recorded) -> None:
        if request.method == "GET" and request.path == PODS_PATH and api.before is not None:
            api.before = None
            api.update("deployments", "demo-triton-all", lambda d: d["spec"].update(replicas=6))

    api.before = kubectl_scale
    [decision] = scaler.tick()
    assert decision.replicas == 4
    scale_writes = [w for w in api.writes() if w.path == SCALE_PATH]
    assert len(scale_writes) == 1  # refused with 409; re-read; replicas had changed: left for the next round
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 6


def test_a_status_only_change_between_read_and_write_is_retried_at_the_new_version(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str
) -> None:
    one_busy_pod(api, redis, prefix)
    scaler = make_scaler(api, RedisPins(redis, prefix, prune=True), prefix)

    def status_update(request: Recorded) -> None:
        if request.method == "GET" and request.path == PODS_PATH and api.before is not None:
            api.before = None
            api.update("deployments", "demo-triton-all", lambda d: d.update(status={"observedGeneration": 2}))

    api.before = status_update
    scaler.tick()
    first, second = [w for w in api.writes() if w.path == SCALE_PATH]
    assert int(second.body["metadata"]["resourceVersion"]) > int(first.body["metadata"]["resourceVersion"])
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 4


# ---- scale from zero -------------------------------------------------------------------------------------------


def test_a_pool_at_zero_replicas_gets_min_replicas_on_the_first_round(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str
) -> None:
    """Scaled to zero by hand: nothing serves, so the pool is brought back at once, without an up-window."""
    api.put("deployments", deployment("demo-triton-all", 0, "all"))
    pools = [{"name": "all", "min_replicas": 2, "max_replicas": 4, "scale_up_window_seconds": 300}]
    scaler = make_scaler(api, RedisPins(redis, prefix, prune=True), prefix, pools=pools)
    [decision] = scaler.tick()
    assert decision.replicas == 2
    [write] = [w for w in api.writes() if w.path == SCALE_PATH]
    assert write.body["spec"] == {"replicas": 2}
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 2


def test_a_pool_at_zero_with_known_demand_is_sized_for_it_at_once(
    api: FakeKubernetesApiServer, redis: Redis, prefix: str
) -> None:
    api.put("deployments", deployment("demo-triton-all", 0, "all"))
    answers = {"minmo_active_sessions": [{"metric": {}, "value": [0, "20"]}]}
    with FakePrometheus(answers).running() as prometheus:
        latency = PrometheusLatency(prometheus.url, NS, "demo-orchestrator")
        pools = [{"name": "all", "max_replicas": 8, "scale_up_window_seconds": 300}]
        [decision] = make_scaler(api, RedisPins(redis, prefix, prune=True), prefix, latency=latency, pools=pools).tick()
    assert decision.demand == 20 and decision.replicas == 4
    assert api.objects[("deployments", "demo-triton-all")]["spec"]["replicas"] == 4
