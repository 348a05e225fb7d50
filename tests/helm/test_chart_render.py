"""Every documented values variant lints clean and renders objects a 1.31 API server would accept."""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest

from tests.helm.chart_render import (
    CHART_DIR,
    KUBE_VERSION,
    KUBE_VERSIONS,
    NAMESPACE,
    load_values,
    render,
    variant_files,
)

VARIANTS = variant_files()
IDS = [path.name.removesuffix("-values.yaml") for path in VARIANTS]
# Kinds from CRDs whose schemas kubernetes-validate does not ship; test_service_monitors_select_metrics_ports and
# test_the_certificate_covers_the_names_clients_and_the_probe_use check what matters about them instead.
CRD_KINDS = {"ServiceMonitor", "Certificate"}
# admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy is GA from Kubernetes 1.30; the chart checks the version.
RENDERED_FROM_1_30 = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
LINT_ERROR = 3


def test_the_documented_variants_exist() -> None:
    assert {
        "default",
        "external-redis",
        "multi-pool",
        "hpa",
        "no-monitoring-no-networkpolicy",
        "no-auth-dev",
        "object-store",
        "pvc-model-repo",
    } <= set(IDS)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_lint_is_clean_in_strict_mode(variant: Path) -> None:
    report = helm.lint(
        CHART_DIR, load_values(variant), strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_every_object_validates_against_the_kubernetes_schema(chart: helm.Chart, variant: Path, version: str) -> None:
    rendered = render(chart, load_values(variant))
    assert rendered.objects, "nothing rendered"
    for obj in rendered.objects:
        if obj["kind"] in CRD_KINDS:
            continue
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in RENDERED_FROM_1_30 and version < "1.30":
            version = "1.30.0"  # the chart renders them only on clusters that have them
        try:
            # strict: unknown fields are errors too, so a misspelt or misplaced key cannot pass silently.
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{variant.name}: {where} at {path} (Kubernetes {version}): {error.message}")


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_rendering_is_deterministic(chart: helm.Chart, variant: Path) -> None:
    """GitOps diffs a render against the last one: nothing random (a generated password) or looked up may differ."""
    first = chart.render(load_values(variant), name="minmo-serve", namespace=NAMESPACE, is_install=True)
    second = chart.render(load_values(variant), name="minmo-serve", namespace=NAMESPACE, is_install=True)
    assert first == second
    for template in (CHART_DIR / "templates").iterdir():
        text = template.read_text()
        for unstable in ("lookup", "randAlpha", "randAlphaNum", "randAscii", "uuidv4", "now"):
            assert f"{unstable} " not in text and f"({unstable}" not in text, f"{template.name} uses {unstable}"


def test_the_certificate_covers_the_names_clients_and_the_probe_use(chart: helm.Chart) -> None:
    """cert-manager's Certificate is a CRD kubernetes-validate has no schema for: the fields that matter, by hand."""
    rendered = render(chart, load_values(CHART_DIR / "ci" / "production-values.yaml"))
    (certificate,) = rendered.of_kind("Certificate")
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    spec = certificate["spec"]
    assert spec["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert "minmo-serve-orchestrator.voice.svc" in spec["dnsNames"]  # the name the in-pod probe checks
    assert {"server auth", "client auth"} <= set(spec["usages"])
    pod = rendered.find("Deployment", "minmo-serve-orchestrator")["spec"]["template"]["spec"]
    (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == spec["secretName"] == "minmo-serve-orchestrator-tls"


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_every_service_selects_pods_that_expose_its_target_ports(chart: helm.Chart, variant: Path) -> None:
    rendered = render(chart, load_values(variant))
    workloads = [obj for obj in rendered.objects if obj["kind"] in {"Deployment", "StatefulSet"}]
    for service in rendered.of_kind("Service"):
        selector = service["spec"]["selector"]
        matching = [w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert matching, f"Service/{service['metadata']['name']} selects no pods"
        for workload in matching:
            names = {p["name"] for c in workload["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in names, (service["metadata"]["name"], port, names)


def test_service_monitors_select_metrics_ports(chart: helm.Chart) -> None:
    """ServiceMonitor's CRD schema is not in kubernetes-validate: check the fields Prometheus Operator needs."""
    rendered = render(chart, load_values(Path(CHART_DIR / "ci" / "hpa-values.yaml")))
    monitors = rendered.of_kind("ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {
        "minmo-serve-orchestrator",
        "minmo-serve-triton-metrics",
    }
    services = rendered.of_kind("Service")
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        wanted = monitor["spec"]["selector"]["matchLabels"]
        selected = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        assert selected, f"ServiceMonitor/{monitor['metadata']['name']} selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["path"] == "/metrics"
            for service in selected:
                assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_release_notes_warn_about_an_open_dev_cluster(chart: helm.Chart) -> None:
    notes = render(chart, load_values(CHART_DIR / "ci" / "no-auth-dev-values.yaml")).notes
    assert "auth.mode=none" in notes
    assert "minmo-serve-orchestrator.voice.svc:50051" in notes


def test_the_stub_liveness_probe_can_fall_back_to_tritons_own_liveness(chart: helm.Chart) -> None:
    values = {"triton": {"stubLivenessProbe": {"enabled": False}}}
    probes = [
        container["livenessProbe"]
        for deployment in render(chart, values).of_kind("Deployment")
        for container in deployment["spec"]["template"]["spec"]["containers"]
        if container["name"] == "tritonserver"
    ]
    assert probes and all(probe.get("httpGet") == {"path": "/v2/health/live", "port": "http"} for probe in probes)
    assert not any("exec" in probe for probe in probes)


def test_a_stub_probe_timeout_below_two_seconds_is_refused(chart: helm.Chart) -> None:
    with pytest.raises(Exception, match="timeoutSeconds"):
        render(chart, {"triton": {"stubLivenessProbe": {"timeoutSeconds": 1}}})
