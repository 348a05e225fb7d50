"""FakeKubernetesApiServer (a FAKE API server: no cluster runs here) refuses what a real API server refuses, so
the autoscaler tests that pass against it prove something. Raw HTTP here, so the requests are exactly the
bad ones; the last tests go through the real client and the autoscaler's own selector code."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from orchestrator.autoscaler.kube import KubernetesPools, bounded_api_client
from tests.integration.fake_kube_api import FakeKubernetesApiServer, deployment, pod

NS = "minmo"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"


@pytest.fixture
def api() -> Iterator[FakeKubernetesApiServer]:
    with FakeKubernetesApiServer(NS).running() as server:
        yield server


def call(api: FakeKubernetesApiServer, method: str, path: str, body: Any = None, content_type: str | None = None):
    """(HTTP status, decoded reply)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(api.url + path, data=data, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def lease(renew_time: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": renew_time, **spec},
    }


@pytest.mark.parametrize(
    "renew_time",
    ["2026-11-25T12:00:00+00:00", "2026-11-25T12:00:00Z", "2026-11-25T12:00:00.123Z", "2026-11-25 12:00:00.000000Z"],
)
def test_a_lease_time_without_six_fractional_digits_is_refused(api: FakeKubernetesApiServer, renew_time: str) -> None:
    status, reply = call(api, "POST", LEASES, lease(renew_time), "application/json")
    assert (status, reply["reason"]) == (400, "BadRequest")
    assert "2006-01-02T15:04:05.000000Z07:00" in reply["message"]


@pytest.mark.parametrize("renew_time", ["2026-11-25T12:00:00.000000Z", "2026-11-25T12:00:00.000001+00:00"])
def test_a_micro_time_is_accepted(api: FakeKubernetesApiServer, renew_time: str) -> None:
    assert call(api, "POST", LEASES, lease(renew_time), "application/json")[0] == 201


def test_bodies_are_checked_against_the_openapi_schema(api: FakeKubernetesApiServer) -> None:
    unknown = lease("2026-11-25T12:00:00.000000Z", holder="typo")
    status, reply = call(api, "POST", LEASES, unknown, "application/json")
    assert status == 422 and "'holder' was unexpected" in reply["message"]
    wrong_type = lease("2026-11-25T12:00:00.000000Z", leaseDurationSeconds="15")
    assert call(api, "POST", LEASES, wrong_type, "application/json")[0] == 422
    wrong_kind = {**lease("2026-11-25T12:00:00.000000Z"), "kind": "Pod"}
    assert call(api, "POST", LEASES, wrong_kind, "application/json")[0] == 400
    with pytest.raises(Exception, match="invalid"):
        api.put("pods", {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}, "spec": {"containers": "x"}})


def test_patch_content_types_mean_what_they_mean(api: FakeKubernetesApiServer) -> None:
    api.put("pods", pod("p-a", "all"))
    path = f"/api/v1/namespaces/{NS}/pods/p-a"
    annotate = {"metadata": {"annotations": {"cost": "-1"}}}
    assert call(api, "PATCH", path, annotate, "text/plain")[0] == 415
    assert call(api, "PATCH", path, annotate, "application/json")[0] == 415
    assert call(api, "PATCH", path, annotate, "application/apply-patch+yaml")[0] == 415  # not implemented: said
    assert call(api, "PATCH", path, annotate, "application/merge-patch+json")[0] == 200
    assert api.objects[("pods", "p-a")]["metadata"]["annotations"] == {"cost": "-1"}
    remove = {"metadata": {"annotations": {"cost": None}}}
    assert call(api, "PATCH", path, remove, "application/merge-patch+json")[0] == 200
    assert api.objects[("pods", "p-a")]["metadata"].get("annotations") == {}
    # JSON patch: a failed test refuses the whole patch.
    test_then_add = [
        {"op": "test", "path": "/metadata/labels/minmo-serve~1pool-pod", "value": "other"},
        {"op": "add", "path": "/metadata/annotations/cost", "value": "-5"},
    ]
    assert call(api, "PATCH", path, test_then_add, "application/json-patch+json")[0] == 422
    test_then_add[0]["value"] = "all"
    assert call(api, "PATCH", path, test_then_add, "application/json-patch+json")[0] == 200
    assert api.objects[("pods", "p-a")]["metadata"]["annotations"] == {"cost": "-5"}
    # Strategic merge of lists needs patch strategies this fake does not have: it says so instead of guessing.
    containers = {"spec": {"containers": [{"name": "tritonserver", "image": "other"}]}}
    status, reply = call(api, "PATCH", path, containers, "application/strategic-merge-patch+json")
    assert status == 500 and "maps only" in reply["message"]
    # The patched object must still be valid: a number where a string belongs is refused.
    assert (
        call(api, "PATCH", path, {"metadata": {"annotations": {"cost": 5}}}, "application/merge-patch+json")[0] == 422
    )


def test_a_resource_version_in_a_write_is_a_precondition(api: FakeKubernetesApiServer) -> None:
    api.put("deployments", deployment("d", 1, "all"))
    scale = f"/apis/apps/v1/namespaces/{NS}/deployments/d/scale"
    _, current = call(api, "GET", scale)
    stale = {
        "metadata": {"resourceVersion": str(int(current["metadata"]["resourceVersion"]) - 1)},
        "spec": {"replicas": 3},
    }
    status, reply = call(api, "PATCH", scale, stale, "application/merge-patch+json")
    assert (status, reply["reason"]) == (409, "Conflict")
    fresh = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "spec": {"replicas": 3}}
    assert call(api, "PATCH", scale, fresh, "application/merge-patch+json")[0] == 200
    assert api.objects[("deployments", "d")]["spec"]["replicas"] == 3
    assert call(api, "PATCH", scale, {"spec": {"replicas": "3"}}, "application/merge-patch+json")[0] == 422


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=gpu", ["a", "b"]),
        ("tier==gpu,zone!=z2", ["a"]),
        ("zone in (z1, z3)", ["a", "c"]),
        ("zone notin (z1)", ["b", "c"]),
        ("spot", ["c"]),
        ("!spot,tier=gpu", ["a", "b"]),
        ("tier in (gpu),zone in (z1,z2)", ["a", "b"]),
    ],
)
def test_label_selectors_are_parsed_with_the_set_based_grammar(
    api: FakeKubernetesApiServer, selector: str, expected: list[str]
) -> None:
    for name, labels in (
        ("a", {"tier": "gpu", "zone": "z1"}),
        ("b", {"tier": "gpu", "zone": "z2"}),
        ("c", {"tier": "cpu", "zone": "z3", "spot": "true"}),
    ):
        api.put("pods", pod(name, "all", labels=labels))
    found = client.CoreV1Api(api.api_client()).list_namespaced_pod(NS, label_selector=selector).items
    assert [p.metadata.name for p in found] == expected


@pytest.mark.parametrize("selector", ["zone in z1", "zone in (z1", "=gpu", "tier=gpu,,", "zone notin (a b)"])
def test_a_malformed_selector_is_refused(api: FakeKubernetesApiServer, selector: str) -> None:
    status, reply = call(api, "GET", f"/api/v1/namespaces/{NS}/pods?labelSelector={urllib.request.quote(selector)}")
    assert (status, reply["reason"]) == (400, "BadRequest")


def test_the_autoscaler_finds_pods_by_the_deployments_match_expressions(api: FakeKubernetesApiServer) -> None:
    """A Deployment selector with matchExpressions: reading matchLabels alone would also take the canary's pods."""
    api.put(
        "deployments",
        deployment(
            "demo-triton-all", 2, "all", expressions=[{"key": "track", "operator": "NotIn", "values": ["canary"]}]
        ),
    )
    api.put("pods", pod("p-a", "all"))
    api.put("pods", pod("p-b", "all", labels={"track": "stable"}))
    api.put("pods", pod("p-canary", "all", labels={"track": "canary"}))
    api_client = bounded_api_client(api.configuration())
    pools = KubernetesPools(client.AppsV1Api(api_client), client.CoreV1Api(api_client), NS, "demo")
    assert [p.name for p in pools.pods("demo-triton-all")] == ["p-a", "p-b"]
    assert api.requests[-1].query["labelSelector"] == [
        "app.kubernetes.io/instance=demo,minmo-serve/pool-pod=all,track notin (canary)"
    ]
