"""The ValidatingAdmissionPolicy that narrows the autoscaler's `patch pods` to what it needs, evaluated for real.

RBAC grants `patch` on every pod in the namespace (a Role cannot select by label). The policy's CEL, taken
from the rendered chart, is run by a CEL implementation (cel-python) on the admission requests the API
server would build: the autoscaler's own patch must pass, and every other change it could attempt with its
token must be refused, as must a pod that is not one of this release's Triton pods.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import helm_python as helm
import pytest

from orchestrator.autoscaler.model import DELETION_COST_ANNOTATION
from tests.helm.chart_render import Rendered, render

AUTOSCALER = "system:serviceaccount:voice:minmo-serve-autoscaler"
POLICY = "minmo-serve-voice-autoscaler-pods"


@pytest.fixture(scope="module")
def rendered(chart: helm.Chart) -> Rendered:
    return render(chart)


def triton_pod(**annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "minmo-serve-triton-all-7d9f8c6b5-x2vqz",
            "namespace": "voice",
            "labels": {
                "app.kubernetes.io/name": "minmo-serve",
                "app.kubernetes.io/instance": "minmo-serve",
                "app.kubernetes.io/component": "triton",
                "minmo-serve/pool": "all",
                "pod-template-hash": "7d9f8c6b5",
            },
            "annotations": dict(annotations),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": "1"}],
        },
        "spec": {"containers": [{"name": "tritonserver", "image": "triton:0.1.0"}]},
    }


class Policy:
    """Evaluates the rendered policy the way the API server does: matchConditions, variables, validations."""

    def __init__(self, rendered: Rendered) -> None:
        self.spec = rendered.find("ValidatingAdmissionPolicy", POLICY)["spec"]
        self.env = celpy.Environment()

    def _eval(self, expression: str, activation: dict[str, Any]) -> Any:
        return self.env.program(self.env.compile(expression)).evaluate(activation)

    def refusals(self, old: dict[str, Any], new: dict[str, Any], user: str = AUTOSCALER) -> list[str] | None:
        """None when the policy does not apply; else the messages of the validations that fail."""
        activation = {
            "object": celpy.json_to_cel(new),
            "oldObject": celpy.json_to_cel(old),
            "request": celpy.json_to_cel({"userInfo": {"username": user}, "operation": "UPDATE"}),
        }
        if not all(self._eval(c["expression"], activation) for c in self.spec["matchConditions"]):
            return None
        variables = celpy.celtypes.MapType({})
        for variable in self.spec["variables"]:
            value = self._eval(variable["expression"], {**activation, "variables": variables})
            variables = celpy.celtypes.MapType({**variables, celpy.celtypes.StringType(variable["name"]): value})
        activation["variables"] = variables
        return [v["message"] for v in self.spec["validations"] if not self._eval(v["expression"], activation)]


@pytest.fixture(scope="module")
def policy(rendered: Rendered) -> Policy:
    return Policy(rendered)


def test_the_policy_matches_only_pod_updates_in_the_release_namespace(rendered: Rendered) -> None:
    spec = rendered.find("ValidatingAdmissionPolicy", POLICY)["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods"]}
    ]
    binding = rendered.find("ValidatingAdmissionPolicyBinding", POLICY)["spec"]
    assert binding["policyName"] == POLICY and binding["validationActions"] == ["Deny"]
    assert binding["matchResources"]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "voice"}}


def test_the_autoscalers_own_patches_are_admitted(policy: Policy) -> None:
    """Set the drained pod's deletion cost, clear it again: exactly kube.py's two writes."""
    before, after = triton_pod(other="kept"), triton_pod(other="kept", **{DELETION_COST_ANNOTATION: "-1000"})
    assert policy.refusals(before, after) == []
    assert policy.refusals(after, before) == []
    bare = triton_pod()
    del bare["metadata"]["annotations"]
    assert policy.refusals(bare, triton_pod(**{DELETION_COST_ANNOTATION: "-1000"})) == []


def changed(change: str) -> tuple[dict[str, Any], dict[str, Any]]:
    old = triton_pod(**{DELETION_COST_ANNOTATION: "-1000"})
    new = copy.deepcopy(old)
    if change == "image":
        new["spec"]["containers"][0]["image"] = "attacker/miner:latest"
    elif change == "label":
        new["metadata"]["labels"]["pod-template-hash"] = "orphaned"  # the ReplicaSet would lose the pod
    elif change == "owner":
        new["metadata"]["ownerReferences"] = []
    elif change == "finalizer":
        new["metadata"]["finalizers"] = ["example.com/never-done"]
    elif change == "another annotation":
        new["metadata"]["annotations"]["sidecar.istio.io/inject"] = "false"
    elif change == "removed annotation":
        old["metadata"]["annotations"]["keep-me"] = "1"
    return old, new


@pytest.mark.parametrize("change", ["image", "label", "owner", "finalizer", "another annotation", "removed annotation"])
def test_anything_else_the_token_could_change_is_refused(policy: Policy, change: str) -> None:
    refusals = policy.refusals(*changed(change))
    assert refusals, f"the autoscaler could change a pod's {change}"


def test_pods_of_other_workloads_and_releases_are_refused(policy: Policy) -> None:
    for label, value in (("app.kubernetes.io/component", "orchestrator"), ("app.kubernetes.io/instance", "other")):
        old = triton_pod()
        old["metadata"]["labels"][label] = value
        new = copy.deepcopy(old)
        new["metadata"]["annotations"][DELETION_COST_ANNOTATION] = "-1000"
        assert policy.refusals(old, new) == ["the autoscaler may change only this release's Triton pool pods"]
    unlabelled = {"metadata": {"name": "db-0", "annotations": {}}, "spec": {"containers": []}}
    marked = copy.deepcopy(unlabelled)
    marked["metadata"]["annotations"][DELETION_COST_ANNOTATION] = "-1000"
    assert policy.refusals(unlabelled, marked) == ["the autoscaler may change only this release's Triton pool pods"]


def test_other_users_are_not_this_policys_business(policy: Policy) -> None:
    """The ReplicaSet controller, kubectl, the kubelet: their pod updates are not matched at all."""
    old, new = changed("label")
    assert policy.refusals(old, new, user="system:serviceaccount:kube-system:replicaset-controller") is None


def test_the_policy_is_only_rendered_where_the_api_exists_and_when_wanted(chart: helm.Chart) -> None:
    off = render(chart, {"autoscaling": {"autoscaler": {"podPatchPolicy": {"enabled": False}}}})
    hpa = render(chart, {"autoscaling": {"mode": "hpa"}})
    for rendered in (off, hpa):
        assert not rendered.of_kind("ValidatingAdmissionPolicy") and not rendered.of_kind(
            "ValidatingAdmissionPolicyBinding"
        )
