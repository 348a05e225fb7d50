"""Liveness and readiness of the orchestrator, asked the way the kubelet asks them: a gRPC health check of the
service name the chart's probe names, over real loopback gRPC.

A dependency outage must make an orchestrator unready (the Service stops sending it calls) and never unlive
(the kubelet would restart every replica at once and cut every session). A drain makes it unready and
leaves it live.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import grpc.aio
import helm_python as helm
import pytest
import redis.asyncio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from orchestrator.devstack.orchestrator_process import OrchestratorProcess, start_orchestrator
from orchestrator.devstack.triton_launcher import free_port
from orchestrator.server.app import build_server
from orchestrator.server.health import (
    LIVENESS_SERVICE,
    ReadinessMonitor,
    not_serving_until_checked,
    redis_probe,
)
from orchestrator.server.servicer import MinMoServicer
from tests.helm.chart_render import CHART_DIR, render

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def probe_services() -> tuple[str, str]:
    """(liveness service, readiness service) exactly as the chart's kubelet gRPC probes name them."""
    with helm.Chart.load(CHART_DIR) as chart:
        values = {"auth": {"mode": "none"}, "tls": {"enabled": False}}
        deployment = render(chart, values).find("Deployment", "minmo-serve-orchestrator")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return container["livenessProbe"]["grpc"]["service"], container["readinessProbe"]["grpc"]["service"]


def check(address: str, service: str) -> str:
    """What the kubelet's grpc probe gets: the status name, or the call's error code."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


@pytest.fixture
async def in_process() -> AsyncIterator[tuple[str, health.aio.HealthServicer]]:
    servicer = health.aio.HealthServicer()
    await not_serving_until_checked(servicer)
    port = free_port()
    server = build_server(MinMoServicer(), port=port, health_servicer=servicer, host="127.0.0.1")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(None)


async def async_check(address: str, service: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def test_the_chart_probes_liveness_and_readiness_on_different_services(probe_services: tuple[str, str]) -> None:
    liveness, readiness = probe_services
    assert liveness == LIVENESS_SERVICE == "minmo.liveness"
    assert readiness == "minmo.v1.MinMo"


async def test_liveness_serves_from_the_start_and_readiness_waits_for_the_first_check(
    in_process: tuple[str, health.aio.HealthServicer], probe_services: tuple[str, str]
) -> None:
    address, _ = in_process
    liveness, readiness = probe_services
    assert await async_check(address, liveness) == "SERVING"
    assert await async_check(address, readiness) == "NOT_SERVING"
    assert await async_check(address, "") == "NOT_SERVING"


async def test_a_dependency_outage_makes_the_process_unready_but_never_unlive(
    in_process: tuple[str, health.aio.HealthServicer], probe_services: tuple[str, str]
) -> None:
    address, servicer = in_process
    liveness, readiness = probe_services
    down = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    up = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        reason = await ReadinessMonitor(servicer, [redis_probe(down)]).check()
        assert reason is not None and reason.startswith("Redis does not answer")
        assert (await async_check(address, readiness), await async_check(address, liveness)) == (
            "NOT_SERVING",
            "SERVING",
        )
        monitor = ReadinessMonitor(servicer, [redis_probe(up)])
        assert await monitor.check() is None  # Redis is back: ready again, without a restart
        assert (await async_check(address, readiness), await async_check(address, liveness)) == ("SERVING", "SERVING")
        # A drain: unready at once and for good, whatever the probes say next; still live.
        await monitor.start_draining()
        assert await monitor.check() is not None
        assert (await async_check(address, readiness), await async_check(address, liveness)) == (
            "NOT_SERVING",
            "SERVING",
        )
    finally:
        await down.aclose()
        await up.aclose()


@pytest.fixture
def serve_without_dependencies(tmp_path: Path) -> Iterator[OrchestratorProcess]:
    """``minmo serve`` whose Triton and Redis are both unreachable (ports nothing listens on)."""
    process = start_orchestrator(
        tmp_path,
        port=free_port(),
        triton_url=f"127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    try:
        yield process
    finally:
        process.process.kill()
        process.process.wait(timeout=10)


@pytest.mark.slow
def test_minmo_serve_stays_live_while_redis_and_triton_are_down(
    serve_without_dependencies: OrchestratorProcess, probe_services: tuple[str, str]
) -> None:
    """The cascade the split prevents: with the old probe (overall health) the kubelet would restart this process."""
    import time

    liveness, readiness = probe_services
    deadline = time.monotonic() + 60
    while check(serve_without_dependencies.address, liveness) != "SERVING":
        assert serve_without_dependencies.process.poll() is None, serve_without_dependencies.log_tail()
        assert time.monotonic() < deadline, serve_without_dependencies.log_tail()
        time.sleep(0.2)
    deadline = time.monotonic() + 30
    while "health: NOT_SERVING" not in serve_without_dependencies.log_path.read_text():
        assert time.monotonic() < deadline, serve_without_dependencies.log_tail()
        time.sleep(0.2)
    assert check(serve_without_dependencies.address, readiness) == "NOT_SERVING"
    assert check(serve_without_dependencies.address, "") == "NOT_SERVING"
    assert check(serve_without_dependencies.address, liveness) == "SERVING"
    log = serve_without_dependencies.log_path.read_text()
    assert "Triton" in log and "Redis does not answer" in log  # the log says why it is not ready
