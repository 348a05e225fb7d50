"""Policies every variant must keep: GPUs where Triton runs, probes, non-root, resources, minimal RBAC,
disruption budgets, bounded scratch space, spread over the right pods."""

from __future__ import annotations

import re
from pathlib import Path

import helm_python as helm
import pytest

from tests.helm.chart_render import REPO_ROOT, hook, load_values, pod_specs, render, variant_files

VARIANTS = variant_files()
IDS = [path.name.removesuffix("-values.yaml") for path in VARIANTS]
# The autoscaler serves no port: it has a liveness probe (its heartbeat) and no readiness (nothing routes
# to it). The Redis password hook is a Job that runs once: neither.
LIVENESS_ONLY = {"autoscaler"}
CONTAINERS_WITHOUT_PROBES = {"redis-password"}
# Containers whose pods call the Kubernetes API, and so mount a ServiceAccount token.
API_CLIENTS = {"autoscaler", "orchestrator", "redis-password"}
UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def quantity(value: str | int) -> float:
    """A Kubernetes quantity in base units (bytes, or cores: ``500m`` is 0.5)."""
    match = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi)?", str(value))
    assert match, f"not a quantity: {value!r}"
    number, unit = float(match.group(1)), match.group(2) or ""
    return number / 1000 if unit == "m" else number * UNITS[unit]


@pytest.fixture(scope="module", params=VARIANTS, ids=IDS)
def variant_objects(request: pytest.FixtureRequest, chart: helm.Chart) -> list[dict]:
    path: Path = request.param
    return render(chart, load_values(path)).objects


def test_every_triton_pod_asks_for_a_gpu_and_lands_on_gpu_nodes(variant_objects: list[dict]) -> None:
    pools = [o for o in variant_objects if o["kind"] == "Deployment" and "-triton-" in o["metadata"]["name"]]
    assert pools, "no Triton pool rendered"
    for pool in pools:
        spec = pool["spec"]["template"]["spec"]
        (server,) = spec["containers"]
        assert int(server["resources"]["limits"]["nvidia.com/gpu"]) >= 1, pool["metadata"]["name"]
        assert spec["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L20"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"]
        args = server["args"]
        assert "--model-control-mode=explicit" in args
        assert any(a.startswith("--load-model=") for a in args)


def test_every_model_is_loaded_by_exactly_one_pool(variant_objects: list[dict]) -> None:
    loaded = [
        arg.removeprefix("--load-model=")
        for o in variant_objects
        if o["kind"] == "Deployment" and "-triton-" in o["metadata"]["name"]
        for arg in o["spec"]["template"]["spec"]["containers"][0]["args"]
        if arg.startswith("--load-model=")
    ]
    assert sorted(loaded) == sorted(["encoder", "backbone", "duplex", "speech_lm", "vocoder"])


def test_every_long_running_container_has_the_probes_it_can_answer(variant_objects: list[dict]) -> None:
    for where, spec in pod_specs(variant_objects):
        for container in spec["containers"]:
            name = container["name"]
            if name in CONTAINERS_WITHOUT_PROBES:
                assert not {"readinessProbe", "livenessProbe"} & container.keys(), where
            elif name in LIVENESS_ONLY:
                assert "livenessProbe" in container and "readinessProbe" not in container, f"{where}/{name}"
            else:
                assert "readinessProbe" in container and "livenessProbe" in container, f"{where}/{name}"


def test_no_pod_or_container_can_run_as_root(variant_objects: list[dict]) -> None:
    for where, spec in pod_specs(variant_objects):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in spec.get("initContainers", []) + spec["containers"]:
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where


def test_only_triton_keeps_a_writable_root_filesystem(variant_objects: list[dict]) -> None:
    for where, spec in pod_specs(variant_objects):
        for container in spec["containers"]:
            if container["name"] != "tritonserver":
                assert container["securityContext"]["readOnlyRootFilesystem"] is True, where


def test_only_the_components_that_call_the_kubernetes_api_get_a_token(variant_objects: list[dict]) -> None:
    """The autoscaler (Lease, scale), the orchestrator (the pools' EndpointSlices) and the Redis password hook;
    Triton and Redis not."""
    for where, spec in pod_specs(variant_objects):
        wants_token = spec["containers"][0]["name"] in API_CLIENTS
        assert spec["automountServiceAccountToken"] is wants_token, where
        if wants_token:
            assert spec["serviceAccountName"] == f"minmo-serve-{spec['containers'][0]['name']}", where


def test_every_container_has_cpu_and_memory_requests_and_limits(variant_objects: list[dict]) -> None:
    for where, spec in pod_specs(variant_objects):
        for container in spec["containers"]:
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources[bound].keys(), f"{where}/{container['name']} {bound}"


def budgets_of(variant_objects: list[dict], workload: dict) -> list[dict]:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return [
        b
        for b in variant_objects
        if b["kind"] == "PodDisruptionBudget" and b["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]


def test_every_pool_and_redis_has_exactly_one_disruption_budget_that_lets_broken_pods_go(
    variant_objects: list[dict],
) -> None:
    """One, because the eviction API refuses to evict a pod that two budgets select; unhealthy pods always
    evictable, so a crash-looping pod never blocks a node drain."""
    protected = [
        o
        for o in variant_objects
        if o["kind"] == "StatefulSet" or (o["kind"] == "Deployment" and "-triton-" in o["metadata"]["name"])
    ]
    assert protected
    for workload in protected:
        budgets = budgets_of(variant_objects, workload)
        if workload["kind"] == "StatefulSet" and not budgets:
            continue  # a variant may turn the Redis budget off (a dev cluster); checked in test_chart_variants
        (budget,) = budgets
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert len({"minAvailable", "maxUnavailable"} & budget["spec"].keys()) == 1
    for workload in (o for o in variant_objects if o["kind"] in {"Deployment", "StatefulSet"}):
        assert len(budgets_of(variant_objects, workload)) <= 1, workload["metadata"]["name"]


def test_every_disk_scratch_volume_is_bounded_and_triton_requests_room_for_it(variant_objects: list[dict]) -> None:
    """An emptyDir without a sizeLimit can fill the node's disk; Triton's /tmp (an object store's model copy)
    must also be covered by its ephemeral-storage request, or the scheduler packs pods onto a full disk."""
    for where, spec in pod_specs(variant_objects):
        disk = {v["name"]: v["emptyDir"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for name, empty_dir in disk.items():
            assert empty_dir.get("sizeLimit"), f"{where}: emptyDir {name} has no sizeLimit"
        for container in spec["containers"]:
            if container["name"] != "tritonserver":
                continue
            on_disk = sum(quantity(d["sizeLimit"]) for d in disk.values() if d.get("medium") != "Memory")
            requested = container["resources"]["requests"].get("ephemeral-storage")
            assert requested and quantity(requested) >= on_disk, f"{where}: requests {requested} for {on_disk} B"


def test_topology_spread_counts_the_workloads_own_pods(variant_objects: list[dict]) -> None:
    """A spread whose selector matched other pods (or none) would spread nothing."""
    for obj in variant_objects:
        if obj["kind"] not in {"Deployment", "StatefulSet"} or hook(obj):
            continue
        labels = obj["spec"]["template"]["metadata"]["labels"]
        for constraint in obj["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
            selector = constraint["labelSelector"]["matchLabels"]
            assert selector == obj["spec"]["selector"]["matchLabels"], obj["metadata"]["name"]
            assert selector.items() <= labels.items()
            if obj["kind"] == "Deployment":
                assert constraint["matchLabelKeys"] == ["pod-template-hash"]  # each rollout's pods spread too


def test_replicas_are_left_to_the_autoscaler_or_hpa(variant_objects: list[dict]) -> None:
    """A chart upgrade must not reset replicas an autoscaler chose: the field is only set when nothing scales."""
    scaled_by_hpa = {
        o["spec"]["scaleTargetRef"]["name"] for o in variant_objects if o["kind"] == "HorizontalPodAutoscaler"
    }
    has_autoscaler = any(
        o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-autoscaler") for o in variant_objects
    )
    for pool in (o for o in variant_objects if o["kind"] == "Deployment" and "-triton-" in o["metadata"]["name"]):
        managed = pool["metadata"]["name"] in scaled_by_hpa or has_autoscaler
        assert ("replicas" in pool["spec"]) is not managed, pool["metadata"]["name"]


# kubernetes-client method -> (API group, resource, verb). A call missing here fails the test below: add it,
# then grant it in templates/autoscaler.yaml.
CLIENT_CALLS = {
    "read_namespaced_lease": ("coordination.k8s.io", "leases", "get"),
    "replace_namespaced_lease": ("coordination.k8s.io", "leases", "update"),
    "create_namespaced_lease": ("coordination.k8s.io", "leases", "create"),
    "read_namespaced_deployment": ("apps", "deployments", "get"),
    "list_namespaced_deployment": ("apps", "deployments", "list"),
    "read_namespaced_deployment_scale": ("apps", "deployments/scale", "get"),
    "patch_namespaced_deployment_scale": ("apps", "deployments/scale", "patch"),
    "list_namespaced_pod": ("", "pods", "list"),
    "patch_namespaced_pod": ("", "pods", "patch"),
    "list_namespaced_endpoint_slice": ("discovery.k8s.io", "endpointslices", "list"),
    "read_namespaced_secret": ("", "secrets", "get"),
    "create_namespaced_secret": ("", "secrets", "create"),
}
AUTOSCALER_CODE = REPO_ROOT / "orchestrator" / "autoscaler"
ROUTING_CODE = REPO_ROOT / "orchestrator" / "routing"
DEPLOY_CODE = REPO_ROOT / "orchestrator" / "deploy"
# Namespaced kubernetes-client methods, called or passed (a watch passes the list method uncalled).
KUBE_CALL = r"\.((?:read|list|create|replace|patch|delete)_(?:namespaced_\w+|\w+_for_all_namespaces))\b"


def permissions_the_code_uses(code: Path = AUTOSCALER_CODE) -> set[tuple[str, str, str]]:
    called = {match for source in code.glob("*.py") for match in re.findall(KUBE_CALL, source.read_text())}
    unknown = called - CLIENT_CALLS.keys()
    assert not unknown, f"{code} calls {sorted(unknown)}: map them in CLIENT_CALLS and grant them"
    return {CLIENT_CALLS[call] for call in called}


def granted_by(role: dict) -> set[tuple[str, str, str]]:
    granted = set()
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), f"wildcard in {rule}"
        granted |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return granted


def assert_bound_to_its_service_account(variant_objects: list[dict], name: str) -> None:
    (binding,) = [o for o in variant_objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == name]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "voice"}]


def test_orchestrator_rbac_grants_exactly_the_calls_the_router_makes(variant_objects: list[dict]) -> None:
    roles = [o for o in variant_objects if o["kind"] == "Role" and o["metadata"]["name"] == "minmo-serve-orchestrator"]
    (role,) = roles
    assert (
        granted_by(role) == permissions_the_code_uses(ROUTING_CODE) == {("discovery.k8s.io", "endpointslices", "list")}
    )
    assert_bound_to_its_service_account(variant_objects, "minmo-serve-orchestrator")
    assert not [o for o in variant_objects if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def test_the_redis_password_hook_is_granted_exactly_the_calls_its_code_makes(variant_objects: list[dict]) -> None:
    roles = [
        o for o in variant_objects if o["kind"] == "Role" and o["metadata"]["name"] == "minmo-serve-redis-password"
    ]
    if not roles:
        return  # an existing Secret is named, or Redis is external: no hook
    (role,) = roles
    assert hook(role)
    assert (
        granted_by(role)
        == permissions_the_code_uses(DEPLOY_CODE)
        == {("", "secrets", "get"), ("", "secrets", "create")}
    )
    by_verb = {rule["verbs"][0]: rule for rule in role["rules"]}
    assert by_verb["get"]["resourceNames"] == ["minmo-serve-redis-password"]  # the one Secret, by name
    assert_bound_to_its_service_account(variant_objects, "minmo-serve-redis-password")


def test_autoscaler_rbac_grants_exactly_the_calls_its_code_makes(variant_objects: list[dict]) -> None:
    roles = [
        o
        for o in variant_objects
        if o["kind"] in {"Role", "ClusterRole"}
        and o["metadata"]["name"] not in {"minmo-serve-orchestrator", "minmo-serve-redis-password"}
    ]
    pools = sorted(
        o["metadata"]["name"]
        for o in variant_objects
        if o["kind"] == "Deployment" and "-triton-" in o["metadata"]["name"]
    )
    if not any(o["metadata"]["name"] == "minmo-serve-autoscaler" for o in variant_objects if o["kind"] == "Deployment"):
        assert roles == [], "RBAC rendered without an autoscaler"
        return
    (role,) = roles
    assert role["kind"] == "Role", "the autoscaler needs no cluster-wide rights"
    assert granted_by(role) == permissions_the_code_uses(AUTOSCALER_CODE)
    # Names wherever Kubernetes can check them: its own Lease, this release's pools.
    by_resource = {(rule["resources"][0], tuple(rule["verbs"])): rule for rule in role["rules"]}
    assert by_resource[("leases", ("get", "update"))]["resourceNames"] == ["minmo-serve-autoscaler"]
    assert sorted(by_resource[("deployments/scale", ("get", "patch"))]["resourceNames"]) == pools
    assert_bound_to_its_service_account(variant_objects, "minmo-serve-autoscaler")


def test_network_policies_let_only_the_orchestrator_reach_triton_grpc(variant_objects: list[dict]) -> None:
    policies = {o["metadata"]["name"]: o for o in variant_objects if o["kind"] == "NetworkPolicy"}
    if not policies:
        pytest.skip("this variant disables NetworkPolicies (networkPolicy.enabled=false)")
    triton = policies["minmo-serve-triton"]
    grpc_rule = next(r for r in triton["spec"]["ingress"] if r["ports"][0]["port"] == 8001)
    assert grpc_rule["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "minmo-serve",
                    "app.kubernetes.io/instance": "minmo-serve",
                    "app.kubernetes.io/component": "orchestrator",
                }
            }
        }
    ]
    metrics_rule = next(r for r in triton["spec"]["ingress"] if r["ports"][0]["port"] == 8002)
    assert metrics_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    if "minmo-serve-redis" in policies:
        sources = [
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for peer in policies["minmo-serve-redis"]["spec"]["ingress"][0]["from"]
        ]
        assert set(sources) <= {"orchestrator", "autoscaler"} and "orchestrator" in sources
