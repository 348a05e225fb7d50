"""EndpointSliceEndpoints reads pod names and addresses with the real ``kubernetes`` client from
FakeKubernetesApiServer (a fake: no cluster runs here)."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from orchestrator.routing import EndpointSliceEndpoints, PodEndpoint
from tests.integration.fake_kube_api import FakeKubernetesApiServer


def endpoint(pod: str, ip: str, ready: bool) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": {"ready": ready}, "targetRef": {"kind": "Pod", "name": pod}}


def endpoint_slice(name: str, service: str, endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000}, {"name": "grpc", "port": 8001}],
        "endpoints": endpoints,
    }


async def test_ready_pods_of_each_pool_service_with_their_names() -> None:
    clock = [0.0]
    with FakeKubernetesApiServer("minmo").running() as api:
        api.put("endpointslices", endpoint_slice("all-x1", "demo-triton-all", [endpoint("p-b", "10.0.0.2", True)]))
        api.put(
            "endpointslices",
            endpoint_slice(
                "all-x2", "demo-triton-all", [endpoint("p-a", "10.0.0.1", True), endpoint("p-c", "10.0.0.3", False)]
            ),
        )
        api.put("endpointslices", endpoint_slice("other", "demo-orchestrator", [endpoint("o-1", "10.0.1.1", True)]))
        source = EndpointSliceEndpoints(
            client.DiscoveryV1Api(api.api_client()), "minmo", {"all": "demo-triton-all"}, clock=lambda: clock[0]
        )

        found = await source.endpoints()
        await source.endpoints()  # within refresh_seconds: served from the cache
        assert len(api.requests) == 1
        clock[0] = 6.0
        await source.endpoints()

    assert found == {"all": (PodEndpoint("p-a", "10.0.0.1:8001"), PodEndpoint("p-b", "10.0.0.2:8001"))}
    assert api.requests[0].path == "/apis/discovery.k8s.io/v1/namespaces/minmo/endpointslices"
    assert api.requests[0].query["labelSelector"] == ["kubernetes.io/service-name=demo-triton-all"]
    assert len(api.requests) == 2
