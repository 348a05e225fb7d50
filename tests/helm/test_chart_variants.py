"""What each documented variant changes, checked on the rendered objects."""

from __future__ import annotations

import helm_python as helm
import yaml

from orchestrator.autoscaler.config import parse_config
from tests.helm.chart_render import CI_DIR, Rendered, load_values, render


def variant(chart: helm.Chart, name: str) -> Rendered:
    return render(chart, load_values(CI_DIR / f"{name}-values.yaml"))


def orchestrator_args(rendered: Rendered) -> list[str]:
    deployment = rendered.find("Deployment", "minmo-serve-orchestrator")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def pool_args(rendered: Rendered, pool: str) -> list[str]:
    deployment = rendered.find("Deployment", f"minmo-serve-triton-{pool}")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_external_redis_replaces_the_bundled_one_and_reads_its_password_from_the_secret(chart: helm.Chart) -> None:
    rendered = variant(chart, "external-redis")
    assert not [o for o in rendered.objects if "redis" in o["metadata"]["name"]]
    args = orchestrator_args(rendered)
    assert "--redis=rediss://redis.example.internal:6380/0" in args
    assert "--redis-ca=/etc/minmo/redis-ca/ca.crt" in args
    volumes = rendered.find("Deployment", "minmo-serve-orchestrator")["spec"]["template"]["spec"]["volumes"]
    password = next(v for v in volumes if v["name"] == "redis-password")
    assert password["secret"] == {"secretName": "managed-redis", "items": [{"key": "password", "path": "password"}]}
    # The autoscaler gets the same credentials the same way: the URL alone, the password and the CA as files.
    autoscaler_pod = rendered.find("Deployment", "minmo-serve-autoscaler")["spec"]["template"]["spec"]
    autoscaler = autoscaler_pod["containers"][0]
    shared = {"--redis=rediss://redis.example.internal:6380/0", "--redis-ca=/etc/minmo/redis-ca/ca.crt"}
    shared.add("--redis-password-file=/etc/minmo/redis/password")
    assert shared <= set(args) and shared <= set(autoscaler["args"])
    assert not any("REDIS_PASSWORD" in str(item) for item in [*autoscaler["args"], *autoscaler.get("env", [])])
    autoscaler_volumes = {v["name"]: v for v in autoscaler_pod["volumes"]}
    assert autoscaler_volumes["redis-password"] == password
    assert autoscaler_volumes["redis-ca"] == next(v for v in volumes if v["name"] == "redis-ca")
    mounts = {m["mountPath"] for m in autoscaler["volumeMounts"]}
    assert {"/etc/minmo/redis", "/etc/minmo/redis-ca"} <= mounts


def test_multi_pool_splits_the_models_and_scopes_scaling_rights_to_the_three_pools(chart: helm.Chart) -> None:
    rendered = variant(chart, "multi-pool")
    loaded = {
        pool: [a.removeprefix("--load-model=") for a in pool_args(rendered, pool) if a.startswith("--load-model=")]
        for pool in ("listen", "backbone", "speak")
    }
    assert loaded == {"listen": ["encoder", "duplex"], "backbone": ["backbone"], "speak": ["speech_lm", "vocoder"]}
    for pool in loaded:
        assert rendered.find("Service", f"minmo-serve-triton-{pool}")["spec"]["clusterIP"] == "None"
        rendered.find("Service", f"minmo-serve-triton-{pool}-metrics")
        rendered.find("PodDisruptionBudget", f"minmo-serve-triton-{pool}")
    scale_rule = next(
        r for r in rendered.find("Role", "minmo-serve-autoscaler")["rules"] if "deployments/scale" in r["resources"]
    )
    assert sorted(scale_rule["resourceNames"]) == [
        "minmo-serve-triton-backbone",
        "minmo-serve-triton-listen",
        "minmo-serve-triton-speak",
    ]
    text = rendered.find("ConfigMap", "minmo-serve-autoscaler")["data"]["config.yaml"]
    config = parse_config(yaml.safe_load(text))
    assert [(p.name, p.deployment, p.max_replicas, p.sessions_per_pod) for p in config.pools] == [
        ("listen", "minmo-serve-triton-listen", 4, 32),
        ("backbone", "minmo-serve-triton-backbone", 8, 8),
        ("speak", "minmo-serve-triton-speak", 6, 16),
    ]
    assert dict(config.pools[1].slo.stage_p95_seconds) == {"backbone_prefill": 0.25, "first_token": 0.4}
    pools = [a for a in orchestrator_args(rendered) if a.startswith("--triton-pool=")]
    assert pools == [
        "--triton-pool=listen=encoder,duplex@k8s:minmo-serve-triton-listen",
        "--triton-pool=backbone=backbone@k8s:minmo-serve-triton-backbone",
        "--triton-pool=speak=speech_lm,vocoder@k8s:minmo-serve-triton-speak",
    ]


def test_hpa_mode_scales_each_pool_on_queue_time_fast_up_slow_down_and_drops_the_autoscaler(chart: helm.Chart) -> None:
    rendered = variant(chart, "hpa")
    assert not [o for o in rendered.objects if o["metadata"]["name"] == "minmo-serve-autoscaler"]
    (hpa,) = rendered.of_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "minmo-serve-triton-all",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "triton_queue_avg_us"},
                "target": {"type": "AverageValue", "averageValue": "20000"},
            },
        }
    ]
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]
    assert "replicas" not in rendered.find("Deployment", "minmo-serve-triton-all")["spec"]


def test_object_store_repository_is_read_by_tritonserver_with_credentials_and_jwt_over_mutual_tls(
    chart: helm.Chart,
) -> None:
    rendered = variant(chart, "object-store")
    server = rendered.find("Deployment", "minmo-serve-triton-all")["spec"]["template"]["spec"]["containers"][0]
    assert server["args"][0] == "--model-repository=s3://minmo-models/model_repository"
    assert server["envFrom"] == [{"secretRef": {"name": "minmo-s3-credentials"}}]
    weights = next(m for m in server["volumeMounts"] if m["name"] == "weights")
    assert weights["subPath"] == "minmo"
    args = orchestrator_args(rendered)
    for expected in (
        "--auth=jwt",
        "--jwt-issuer=https://auth.example.com/",
        "--jwt-audience=minmo-serve",
        "--jwt-public-key-file=/etc/minmo/auth/jwt-public-key.pem",
        "--tls-cert=/etc/minmo/tls/tls.crt",
        "--tls-key=/etc/minmo/tls/tls.key",
        "--tls-client-ca=/etc/minmo/tls/ca.crt",
    ):
        assert expected in args
    # The chart creates no auth Secret when an existing one is named.
    assert not [o for o in rendered.of_kind("Secret") if o["metadata"]["name"] == "minmo-serve-jwt"]
    assert (
        "--prometheus-url=http://prometheus-operated.monitoring:9090"
        in (rendered.find("Deployment", "minmo-serve-autoscaler")["spec"]["template"]["spec"]["containers"][0]["args"])
    )


def test_pvc_model_repository_and_api_key_hashes_from_values(chart: helm.Chart) -> None:
    rendered = variant(chart, "pvc-model-repo")
    spec = rendered.find("Deployment", "minmo-serve-triton-all")["spec"]["template"]["spec"]
    assert spec["containers"][0]["args"][0] == "--model-repository=/models"
    repo = next(v for v in spec["volumes"] if v["name"] == "model-repository")
    assert repo["persistentVolumeClaim"] == {"claimName": "minmo-models", "readOnly": True}
    keys = yaml.safe_load(rendered.find("Secret", "minmo-serve-api-keys")["stringData"]["api-keys.yaml"])
    assert keys == {
        "keys": [{"key_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "tenant": "acme"}]
    }


def test_no_auth_dev_turns_auth_and_tls_off_and_keeps_redis_on_a_bounded_scratch_disk(chart: helm.Chart) -> None:
    rendered = variant(chart, "no-auth-dev")
    args = orchestrator_args(rendered)
    assert "--auth=none" in args
    assert not [a for a in args if a.startswith(("--api-keys-file", "--jwt-", "--tls-"))]
    redis = rendered.find("StatefulSet", "minmo-serve-redis")["spec"]
    assert "volumeClaimTemplates" not in redis
    (data,) = [v for v in redis["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert data["emptyDir"] == {"sizeLimit": "8Gi"}
    # A throwaway cluster: no budget makes a drain wait (the pool's lets its one pod go).
    (budget,) = rendered.of_kind("PodDisruptionBudget")
    assert budget["metadata"]["name"] == "minmo-serve-triton-all" and budget["spec"]["maxUnavailable"] == 1
    assert rendered.find("Deployment", "minmo-serve-triton-all")["spec"]["replicas"] == 1
    assert "WARNING: pool all can run a single pod" in rendered.notes


def test_production_places_every_component_where_its_values_say(chart: helm.Chart) -> None:
    rendered = variant(chart, "production")
    pool = rendered.find("Deployment", "minmo-serve-triton-all")["spec"]["template"]["spec"]
    assert (pool["priorityClassName"], pool["runtimeClassName"]) == ("minmo-gpu-serving", "nvidia")
    terms = pool["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "node-group", "operator": "In", "values": ["gpu-l20"]}]}]
    zone = pool["topologySpreadConstraints"][0]
    assert (zone["topologyKey"], zone["whenUnsatisfiable"]) == ("topology.kubernetes.io/zone", "DoNotSchedule")
    redis = rendered.find("StatefulSet", "minmo-serve-redis")["spec"]["template"]["spec"]
    assert redis["priorityClassName"] == "minmo-serving" and "runtimeClassName" not in redis
    orchestrator = rendered.find("Deployment", "minmo-serve-orchestrator")
    assert orchestrator["spec"]["template"]["spec"]["priorityClassName"] == "minmo-serving"
    assert rendered.find("PodDisruptionBudget", "minmo-serve-orchestrator")["spec"]["minAvailable"] == 2
    autoscaler = rendered.find("Deployment", "minmo-serve-autoscaler")["spec"]["template"]["spec"]
    assert "--orchestrator-deployment=minmo-serve-orchestrator" in autoscaler["containers"][0]["args"]
    assert "WARNING" not in rendered.notes and "Create it" not in rendered.notes  # cert-manager issues it
