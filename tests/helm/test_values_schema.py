"""A wrong value fails `helm install` with a message that names the field and says what is allowed."""

from __future__ import annotations

import copy
from typing import Any

import helm_python as helm
import pytest

from orchestrator.observability.metrics import STAGES
from tests.helm.chart_render import REPO_ROOT, render


def default_pool(chart: helm.Chart, **changes: Any) -> dict[str, Any]:
    pool = copy.deepcopy(chart.values["tritonPools"][0])
    pool.update(changes)
    return pool


# (values, error class, fragments the message must contain)
SCHEMA_CASES: dict[str, tuple[Any, type[helm.HelmError], list[str]]] = {
    "unknown model in a pool": (
        lambda chart: {"tritonPools": [default_pool(chart, models=["encoder", "whisper"])]},
        helm.HelmValuesError,
        ["/tritonPools/0/models/1", "encoder", "speech_lm"],
    ),
    "negative replicas": (
        lambda chart: {"orchestrator": {"replicas": -1}},
        helm.HelmValuesError,
        ["/orchestrator/replicas", "minimum"],
    ),
    "negative pool replicas": (
        lambda chart: {"tritonPools": [default_pool(chart, minReplicas=-2)]},
        helm.HelmValuesError,
        ["/tritonPools/0/minReplicas", "minimum"],
    ),
    # Scale to zero: a pool without a pod never sees demand; an API server refuses an HPA with minReplicas 0.
    "pool scaled to zero": (
        lambda chart: {"tritonPools": [default_pool(chart, minReplicas=0)]},
        helm.HelmValuesError,
        ["/tritonPools/0/minReplicas", "minimum: got 0, want 1"],
    ),
    "hpa pool scaled to zero": (
        lambda chart: {"autoscaling": {"mode": "hpa"}, "tritonPools": [default_pool(chart, minReplicas=0)]},
        helm.HelmValuesError,
        ["/tritonPools/0/minReplicas", "minimum: got 0, want 1"],
    ),
    "fixed pool of zero": (
        lambda chart: {"autoscaling": {"mode": "none"}, "tritonPools": [default_pool(chart, replicas=0)]},
        helm.HelmValuesError,
        ["/tritonPools/0/replicas", "minimum"],
    ),
    "budget with both bounds": (
        lambda chart: {
            "tritonPools": [default_pool(chart, podDisruptionBudget={"maxUnavailable": 1, "minAvailable": 1})]
        },
        helm.HelmValuesError,
        ["/tritonPools/0/podDisruptionBudget"],
    ),
    "the old grace value": (
        lambda chart: {"orchestrator": {"graceSeconds": 10}},
        helm.HelmValuesError,
        ["/orchestrator", "'graceSeconds' not allowed"],
    ),
    "a drain of zero": (
        lambda chart: {"orchestrator": {"drainSeconds": 0}},
        helm.HelmValuesError,
        ["/orchestrator/drainSeconds", "minimum"],
    ),
    "a spread without a topology key": (
        lambda chart: {"triton": {"topologySpreadConstraints": [{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]}},
        helm.HelmValuesError,
        ["/triton/topologySpreadConstraints/0", "topologyKey"],
    ),
    "a priority class that is not a name": (
        lambda chart: {"orchestrator": {"priorityClassName": "High Priority"}},
        helm.HelmValuesError,
        ["/orchestrator/priorityClassName"],
    ),
    "an hpa target of zero": (
        lambda chart: {"autoscaling": {"mode": "hpa", "hpa": {"targetAverageValue": "0"}}},
        helm.HelmValuesError,
        ["/autoscaling/hpa/targetAverageValue"],
    ),
    "wrong type": (
        lambda chart: {"orchestrator": {"maxSessions": "many"}},
        helm.HelmValuesError,
        ["/orchestrator/maxSessions", "want integer"],
    ),
    "misspelt key": (
        lambda chart: {"orchestrator": {"replica": 3}},
        helm.HelmValuesError,
        ["/orchestrator", "'replica' not allowed"],
    ),
    "unknown auth mode": (
        lambda chart: {"auth": {"mode": "basic"}},
        helm.HelmValuesError,
        ["/auth/mode", "api-keys", "jwt", "none"],
    ),
    "root user": (
        lambda chart: {"security": {"tritonUser": 0}},
        helm.HelmValuesError,
        ["/security/tritonUser", "minimum"],
    ),
    "zero gpus": (
        lambda chart: {"tritonPools": [default_pool(chart, gpus=0)]},
        helm.HelmValuesError,
        ["/tritonPools/0/gpus", "minimum"],
    ),
    "pool without resources": (
        lambda chart: {"tritonPools": [{k: v for k, v in default_pool(chart).items() if k != "resources"}]},
        helm.HelmValuesError,
        ["/tritonPools/0", "resources"],
    ),
    "api key given in clear instead of its hash": (
        lambda chart: {"auth": {"apiKeys": {"keys": [{"key_sha256": "my-secret-key", "tenant": "acme"}]}}},
        helm.HelmValuesError,
        ["/auth/apiKeys/keys/0/key_sha256"],
    ),
    "password inside the external redis URL": (
        lambda chart: {"redis": {"bundled": {"enabled": False}, "external": {"url": "redis://:hunter2@r:6379/0"}}},
        helm.HelmValuesError,
        ["/redis/external/url"],
    ),
    "object store with an unsupported scheme": (
        lambda chart: {"triton": {"modelRepository": {"source": "url", "url": "ftp://models"}}},
        helm.HelmValuesError,
        ["/triton/modelRepository/url"],
    ),
    # Cross-field rules: the chart's template fails with a sentence saying what to change.
    "redis both bundled and external": (
        lambda chart: {"redis": {"external": {"url": "redis://redis.example:6379/0"}}},
        helm.HelmRenderError,
        ["both redis.bundled.enabled=true and redis.external.url are set", "set redis.bundled.enabled=false"],
    ),
    "no redis at all": (
        lambda chart: {"redis": {"bundled": {"enabled": False}}},
        helm.HelmRenderError,
        ["set redis.external.url"],
    ),
    "model served by no pool": (
        lambda chart: {"tritonPools": [default_pool(chart, models=["encoder", "backbone", "duplex", "speech_lm"])]},
        helm.HelmRenderError,
        ['no pool serves the model "vocoder"'],
    ),
    "model in two pools": (
        lambda chart: {"tritonPools": [default_pool(chart), default_pool(chart, name="extra", models=["vocoder"])]},
        helm.HelmRenderError,
        ['tritonPools[extra]: the model "vocoder" is already served by another pool'],
    ),
    "min above max": (
        lambda chart: {"tritonPools": [default_pool(chart, minReplicas=5, maxReplicas=2)]},
        helm.HelmRenderError,
        ["tritonPools[all]: minReplicas (5) is greater than maxReplicas (2)"],
    ),
    "auth without tls": (
        lambda chart: {"tls": {"enabled": False}},
        helm.HelmRenderError,
        ["auth.mode=api-keys with tls.enabled=false would send bearer tokens in clear text", "tls.insecure=true"],
    ),
    "cert-manager without an issuer": (
        lambda chart: {"tls": {"certManager": {"enabled": True}}},
        helm.HelmRenderError,
        ["tls.certManager.enabled=true needs tls.certManager.issuerRef.name"],
    ),
    "a drain longer than a node drain should wait": (
        lambda chart: {"orchestrator": {"drainSeconds": 600, "preStopSeconds": 30}},
        helm.HelmRenderError,
        ["orchestrator.preStopSeconds + orchestrator.drainSeconds is 630 s"],
    ),
    "a triton wait shorter than its parts": (
        lambda chart: {
            "triton": {
                "termination": {"minSeconds": 50, "quietSeconds": 20, "maxSeconds": 60, "exitTimeoutSeconds": 30}
            }
        },
        helm.HelmRenderError,
        ["triton.termination.maxSeconds (60) must be at least minSeconds + quietSeconds (70)"],
    ),
    "jwt without issuer": (
        lambda chart: {"auth": {"mode": "jwt", "jwt": {"publicKey": "PEM"}}},
        helm.HelmRenderError,
        ["auth.mode=jwt needs auth.jwt.issuer and auth.jwt.audience"],
    ),
    "pvc model repository without a claim": (
        lambda chart: {"triton": {"modelRepository": {"source": "pvc"}}},
        helm.HelmRenderError,
        ["triton.modelRepository.pvc.claimName"],
    ),
}


@pytest.mark.parametrize("case", SCHEMA_CASES, ids=list(SCHEMA_CASES))
def test_a_wrong_value_fails_the_install_naming_the_field(chart: helm.Chart, case: str) -> None:
    make_values, error, fragments = SCHEMA_CASES[case]
    with pytest.raises(error) as raised:
        render(chart, make_values(chart))
    for fragment in fragments:
        assert fragment in str(raised.value), str(raised.value)


def test_the_defaults_and_a_full_valid_override_pass_the_schema(chart: helm.Chart) -> None:
    chart.validate_schema(chart.values)
    chart.validate_schema(
        chart.merge_values(
            {
                "tritonPools": [
                    default_pool(chart, replicas=1, minReplicas=1, podDisruptionBudget={"minAvailable": 1})
                ],
                "auth": {"mode": "none"},
                "tls": {"enabled": False},
            }
        )
    )


def test_auth_without_tls_renders_only_when_the_values_say_insecure(chart: helm.Chart) -> None:
    """The chart turns TLS on whenever auth is on; a mesh that encrypts pod traffic is the stated exception."""
    rendered = render(chart, {"tls": {"enabled": False, "insecure": True}})
    args = rendered.find("Deployment", "minmo-serve-orchestrator")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--auth=api-keys" in args and not [a for a in args if a.startswith("--tls-")]
    assert "tls.insecure=true: bearer tokens cross the network in clear text" in rendered.notes


def test_schema_enums_match_the_models_and_stages_the_code_has(chart: helm.Chart) -> None:
    """The schema's lists are copies; these keep them equal to the model repository and the metrics' stages."""
    schema = chart.schema
    assert schema is not None
    pool = schema["properties"]["tritonPools"]["items"]["properties"]
    models = {p.name for p in (REPO_ROOT / "model_repository").iterdir() if (p / "config.pbtxt").is_file()}
    assert set(pool["models"]["items"]["enum"]) == models
    assert tuple(pool["slo"]["properties"]["stageP95Seconds"]["propertyNames"]["enum"]) == STAGES


def test_an_unknown_slo_stage_is_rejected_by_name(chart: helm.Chart) -> None:
    pool = default_pool(chart, slo={"stageP95Seconds": {"first_audo": 0.8}})
    with pytest.raises(helm.HelmValuesError, match="first_audo"):
        render(chart, {"tritonPools": [pool]})
