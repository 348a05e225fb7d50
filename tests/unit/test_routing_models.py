"""RoutedModels sends each model to its pool's pod through one shared client per address; readiness names
the pool that has no usable pod. Clients are real ``TritonModels`` (their channels connect lazily)."""

from __future__ import annotations

import redis.asyncio

from orchestrator.devstack.triton_launcher import free_port
from orchestrator.routing import PodEndpoint, PodRouter, StaticEndpoints
from orchestrator.routing.sessions import SessionRouting
from orchestrator.triton.client import TritonModels
from orchestrator.triton.routed import RoutedModels, TritonClients


async def test_each_model_uses_the_client_of_its_pod_and_clients_are_shared_per_address() -> None:
    made: list[str] = []

    def factory(address: str) -> TritonModels:
        made.append(address)
        return TritonModels(address)

    clients = TritonClients(factory)
    first = RoutedModels(clients, {"encoder": "10.0.0.1:8001", "backbone": "10.0.0.2:8001"})
    second = RoutedModels(clients, {"encoder": "10.0.0.1:8001", "backbone": "10.0.0.3:8001"})
    streams = [first.open_stream("encoder"), first.open_stream("backbone"), second.open_stream("encoder")]
    second.open_stream("backbone")
    assert [s.model for s in streams] == ["encoder", "backbone", "encoder"]
    assert made == ["10.0.0.1:8001", "10.0.0.2:8001", "10.0.0.3:8001"]  # one client per address, not per session
    assert clients.client("10.0.0.1:8001") is clients.client("10.0.0.1:8001")
    for stream in streams:
        stream.cancel()
    await clients.close()
    clients.client("10.0.0.1:8001")  # a closed client is never handed out again: a new one is made
    assert made == ["10.0.0.1:8001", "10.0.0.2:8001", "10.0.0.3:8001", "10.0.0.1:8001"]
    await clients.close()


async def test_a_model_without_a_pool_is_a_clear_error() -> None:
    clients = TritonClients(TritonModels)
    routed = RoutedModels(clients, {"encoder": "10.0.0.1:8001"})
    try:
        routed.open_stream("vocoder")
    except KeyError as exc:
        assert "no pool serves model 'vocoder'" in str(exc)
    else:
        raise AssertionError("a model outside every pool was routed")
    await clients.close()


async def test_readiness_names_the_pool_whose_pods_do_not_answer() -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens on a port the OS just handed out and took back
    endpoints = StaticEndpoints({"speak": [PodEndpoint(dead, dead)]})
    client = redis.asyncio.Redis()  # never called: readiness reads no pins
    router = PodRouter(client, endpoints, ttl_seconds=60)
    routing = SessionRouting(
        router, router, endpoints, {"speech_lm": "speak", "vocoder": "speak"}, TritonClients(TritonModels)
    )
    try:
        reason = await routing.readiness()
    finally:
        await routing.close()
        await client.aclose()
    assert reason is not None
    assert reason.startswith("no pod of Triton pool 'speak' is ready") and dead in reason


async def test_readiness_reports_a_pool_without_pods() -> None:
    endpoints = StaticEndpoints({"speak": []})
    client = redis.asyncio.Redis()
    router = PodRouter(client, endpoints, ttl_seconds=60)
    routing = SessionRouting(router, router, endpoints, {"vocoder": "speak"}, TritonClients(TritonModels))
    try:
        assert await routing.readiness() == "Triton pool 'speak' has no ready pod"
    finally:
        await routing.close()
        await client.aclose()
