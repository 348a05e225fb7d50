"""What `helm install` with no values creates: the objects, their resources and the wiring between them."""

from __future__ import annotations

import helm_python as helm
import pytest
import yaml

from orchestrator.autoscaler.config import parse_config
from tests.helm.chart_render import Rendered, kind_names, render

EXPECTED_OBJECTS = {
    "ConfigMap/minmo-serve-autoscaler",
    "ServiceAccount/minmo-serve-autoscaler",
    "Role/minmo-serve-autoscaler",
    "RoleBinding/minmo-serve-autoscaler",
    "Deployment/minmo-serve-autoscaler",
    "NetworkPolicy/minmo-serve-autoscaler",
    "Deployment/minmo-serve-orchestrator",
    "Service/minmo-serve-orchestrator",
    "PodDisruptionBudget/minmo-serve-orchestrator",
    "NetworkPolicy/minmo-serve-orchestrator",
    "ServiceAccount/minmo-serve-orchestrator",
    "Role/minmo-serve-orchestrator",
    "RoleBinding/minmo-serve-orchestrator",
    "Secret/minmo-serve-api-keys",
    "Deployment/minmo-serve-triton-all",
    "Service/minmo-serve-triton-all",
    "Service/minmo-serve-triton-all-metrics",
    "PodDisruptionBudget/minmo-serve-triton-all",
    "NetworkPolicy/minmo-serve-triton",
    "ConfigMap/minmo-serve-redis",
    "Service/minmo-serve-redis",
    "StatefulSet/minmo-serve-redis",
    "PodDisruptionBudget/minmo-serve-redis",
    "NetworkPolicy/minmo-serve-redis",
    # The Redis password: made in the cluster by a hook, never rendered (see test_redis_password_job.py).
    "ServiceAccount/minmo-serve-redis-password",
    "Role/minmo-serve-redis-password",
    "RoleBinding/minmo-serve-redis-password",
    "Job/minmo-serve-redis-password",
    # `patch pods` narrowed to the deletion-cost annotation of this release's Triton pods (Kubernetes >= 1.30).
    "ValidatingAdmissionPolicy/minmo-serve-voice-autoscaler-pods",
    "ValidatingAdmissionPolicyBinding/minmo-serve-voice-autoscaler-pods",
}

# workload -> (replicas, {container: resources}); the closing note of issue 5 quotes this table.
EXPECTED_RESOURCES = {
    "Deployment/minmo-serve-orchestrator": (
        2,
        {
            "orchestrator": {
                "requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "512Mi"},
                "limits": {"cpu": "2", "memory": "2Gi", "ephemeral-storage": "1Gi"},
            }
        },
    ),
    "Deployment/minmo-serve-triton-all": (
        None,  # owned by the autoscaler: unset in the chart
        {
            "tritonserver": {
                "requests": {"cpu": "8", "memory": "48Gi", "ephemeral-storage": "24Gi", "nvidia.com/gpu": 1},
                "limits": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": 1},
            }
        },
    ),
    "StatefulSet/minmo-serve-redis": (
        1,
        {"redis": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}},
    ),
    "Deployment/minmo-serve-autoscaler": (
        2,
        {
            "autoscaler": {
                "requests": {"cpu": "100m", "memory": "256Mi", "ephemeral-storage": "128Mi"},
                "limits": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "256Mi"},
            }
        },
    ),
    "Job/minmo-serve-redis-password": (
        None,
        {
            "redis-password": {
                "requests": {"cpu": "50m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"},
            }
        },
    ),
}


@pytest.fixture(scope="module")
def default(chart: helm.Chart) -> Rendered:
    return render(chart)


def test_default_values_render_exactly_the_expected_objects(default: Rendered) -> None:
    assert kind_names(default.objects) == EXPECTED_OBJECTS


def test_default_workloads_have_the_expected_replicas_and_resources(default: Rendered) -> None:
    workloads = {
        f"{o['kind']}/{o['metadata']['name']}": o
        for o in default.objects
        if o["kind"] in {"Deployment", "StatefulSet", "Job"}
    }
    assert workloads.keys() == EXPECTED_RESOURCES.keys()
    for name, (replicas, containers) in EXPECTED_RESOURCES.items():
        spec = workloads[name]["spec"]
        assert spec.get("replicas") == replicas, name
        assert {c["name"]: c["resources"] for c in spec["template"]["spec"]["containers"]} == containers, name


def test_the_orchestrator_runs_serve_with_auth_redis_and_the_pool(default: Rendered) -> None:
    container = default.find("Deployment", "minmo-serve-orchestrator")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "serve"
    assert not [a for a in args if a.startswith("--triton=")], "sessions are routed to pool pods, not one address"
    assert not [a for a in args if a.startswith("--tokenizer")], "the default weights are the smoke weights"
    for expected in (
        "--port=50051",
        "--metrics-port=9464",
        "--triton-pool=all=encoder,backbone,duplex,speech_lm,vocoder@k8s:minmo-serve-triton-all",
        "--namespace=voice",
        "--redis=redis://minmo-serve-redis:6379/0",
        "--redis-password-file=/etc/minmo/redis/password",
        "--auth=api-keys",
        "--api-keys-file=/etc/minmo/auth/api-keys.yaml",
        "--drain-seconds=20",
        # TLS is on whenever auth is: from <release>-orchestrator-tls (cert-manager's key names).
        "--tls-cert=/etc/minmo/tls/tls.crt",
        "--tls-key=/etc/minmo/tls/tls.key",
    ):
        assert expected in args
    spec = default.find("Deployment", "minmo-serve-orchestrator")["spec"]["template"]["spec"]
    (tls,) = [v for v in spec["volumes"] if v["name"] == "tls"]
    assert tls["secret"] == {"secretName": "minmo-serve-orchestrator-tls"}
    # Over TLS the kubelet cannot ask gRPC itself: a script in the pod asks each health service.
    assert "service='minmo.v1.MinMo'" in container["readinessProbe"]["exec"]["command"][2]
    assert "service='minmo.liveness'" in container["livenessProbe"]["exec"]["command"][2]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert spec["terminationGracePeriodSeconds"] == 5 + 20 + 10
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": 50051, "metrics": 9464}


def test_the_triton_pool_loads_all_five_models_from_the_image_with_weights_from_the_pvc(default: Rendered) -> None:
    spec = default.find("Deployment", "minmo-serve-triton-all")["spec"]["template"]["spec"]
    (server,) = spec["containers"]
    assert server["command"] == ["tritonserver"]
    assert server["args"][:7] == [
        "--model-repository=/opt/minmo/model_repository",
        "--model-control-mode=explicit",
        "--load-model=encoder",
        "--load-model=backbone",
        "--load-model=duplex",
        "--load-model=speech_lm",
        "--load-model=vocoder",
    ]
    assert {"name": "MINMO_WEIGHTS_DIR", "value": "/weights"} in server["env"]
    weights = next(v for v in spec["volumes"] if v["name"] == "weights")
    assert weights["persistentVolumeClaim"] == {"claimName": "minmo-weights", "readOnly": True}
    assert server["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    # Liveness asks every model's stub (a killed stub leaves its model READY and /v2/health/live green).
    assert server["livenessProbe"]["exec"]["command"] == [
        "python3",
        "-m",
        "services.triton.stub_probe",
        "--url",
        "127.0.0.1:8001",
        "--timeout",
        "8",
    ]
    assert server["livenessProbe"]["timeoutSeconds"] == 10
    assert {p["name"]: p["containerPort"] for p in server["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    # The autoscaler, not the chart, decides which pod goes first on a scale-down.
    assert "controller.kubernetes.io/pod-deletion-cost" not in default.find("Deployment", "minmo-serve-triton-all")[
        "spec"
    ]["template"]["metadata"].get("annotations", {})
    assert default.find("Service", "minmo-serve-triton-all")["spec"]["clusterIP"] == "None"


def test_redis_persists_with_everysec_and_reads_a_password_no_render_contains(default: Rendered) -> None:
    conf = default.find("ConfigMap", "minmo-serve-redis")["data"]["redis.conf"]
    assert "appendonly yes" in conf and "appendfsync everysec" in conf and "maxmemory-policy noeviction" in conf
    statefulset = default.find("StatefulSet", "minmo-serve-redis")
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert not [o for o in default.of_kind("Secret") if "redis" in o["metadata"]["name"]]
    env = statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env} == {"minmo-serve-redis-password"}
    job = default.find("Job", "minmo-serve-redis-password")
    assert "--name=minmo-serve-redis-password" in job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"


def test_the_autoscaler_reads_the_rendered_config_with_each_pool_and_its_bounds(default: Rendered) -> None:
    """The ConfigMap goes through the autoscaler's own parser, so a key it does not know fails here, not in a pod."""
    text = default.find("ConfigMap", "minmo-serve-autoscaler")["data"]["config.yaml"]
    config = parse_config(yaml.safe_load(text), source="ConfigMap/minmo-serve-autoscaler")
    assert config.redis_prefix == "minmo:"
    (pool,) = config.pools
    assert (pool.name, pool.deployment) == ("all", "minmo-serve-triton-all")
    assert (pool.min_replicas, pool.max_replicas, pool.sessions_per_pod) == (2, 4, 8)
    assert (pool.scale_up_window_seconds, pool.scale_down_window_seconds, pool.max_drain_seconds) == (30, 600, 900)
    assert dict(pool.slo.stage_p95_seconds) == {"first_audio": 0.8}
    assert pool.slo.queue_seconds == 0.02
    container = default.find("Deployment", "minmo-serve-autoscaler")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "autoscale",
        "--namespace=$(POD_NAMESPACE)",
        "--release=minmo-serve",
        "--config=/etc/minmo/autoscaler/config.yaml",
        "--redis=redis://minmo-serve-redis:6379/0",
        "--redis-password-file=/etc/minmo/redis/password",
        "--lease-name=minmo-serve-autoscaler",
        "--identity=$(POD_NAME)",
        "--interval-seconds=15",
        "--kube-timeout-seconds=10",
        "--redis-timeout-seconds=5",
        "--prometheus-timeout-seconds=5",
        "--round-timeout-seconds=60",
        "--heartbeat-file=/tmp/heartbeat/autoscaler",
    ]
    heartbeat_probe = ["python", "-m", "orchestrator.autoscaler.heartbeat", "/tmp/heartbeat/autoscaler"]
    assert container["livenessProbe"]["exec"]["command"] == heartbeat_probe
    assert container["startupProbe"]["exec"]["command"] == heartbeat_probe


def test_every_object_carries_the_standard_labels(default: Rendered) -> None:
    for obj in default.objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "minmo-serve"
        assert labels["app.kubernetes.io/instance"] == "minmo-serve"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["helm.sh/chart"] == "minmo-serve-0.2.0"
        assert labels["app.kubernetes.io/component"]
