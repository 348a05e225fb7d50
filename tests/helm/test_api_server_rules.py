"""Rules a real API server enforces that the OpenAPI schema cannot express, checked on every rendered object.

kubernetes-validate checks field names and types; the API server's validation code checks more (an HPA with
minReplicas 0 is refused unless an alpha feature gate is on, a stabilization window above an hour is
refused, a Service name must be a DNS-1035 label...). These are the rules for the kinds this chart
renders, transcribed from the API server's validation (pkg/apis/*/validation), so that "renders and
validates" means "a cluster accepts it".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from tests.helm.chart_render import CI_DIR, load_values, render, variant_files

VARIANTS = variant_files()
IDS = [path.name.removesuffix("-values.yaml") for path in VARIANTS]
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def hpa_problems(hpa: dict[str, Any]) -> list[str]:
    """ValidateHorizontalPodAutoscaler (autoscaling/v2), without the HPAScaleToZero alpha gate."""
    spec, problems = hpa["spec"], []
    if spec.get("minReplicas", 1) < 1:
        problems.append("minReplicas must be greater than or equal to 1")
    if spec["maxReplicas"] < spec.get("minReplicas", 1):
        problems.append("maxReplicas must be greater than or equal to minReplicas")
    for direction in ("scaleUp", "scaleDown"):
        rules = spec.get("behavior", {}).get(direction)
        if rules is None:
            continue
        if not 0 <= rules.get("stabilizationWindowSeconds", 0) <= 3600:
            problems.append(f"{direction}.stabilizationWindowSeconds must be within [0, 3600]")
        if rules.get("selectPolicy") not in {None, "Max", "Min", "Disabled"}:
            problems.append(f"{direction}.selectPolicy is not one of Max, Min, Disabled")
        if not rules.get("policies") and rules.get("selectPolicy") != "Disabled":
            problems.append(f"{direction}.policies must not be empty")
        for policy in rules.get("policies", []):
            if policy["type"] not in {"Pods", "Percent"} or policy["value"] <= 0:
                problems.append(f"{direction} policy {policy}: type Pods or Percent, value > 0")
            if not 0 < policy["periodSeconds"] <= 1800:
                problems.append(f"{direction} policy {policy}: periodSeconds within (0, 1800]")
    for metric in spec.get("metrics", []):
        target = metric[metric["type"][0].lower() + metric["type"][1:]]["target"]
        value = target.get("averageValue") or target.get("value")
        if value is not None and float(re.sub(r"[a-zA-Z]+$", "", str(value))) <= 0:
            problems.append(f"metric target {target} must be positive")
    return problems


def name_problems(obj: dict[str, Any]) -> list[str]:
    name, kind, problems = obj["metadata"]["name"], obj["kind"], []
    if kind == "Service" and not (DNS_1035_LABEL.match(name) and len(name) <= 63):
        problems.append(f"Service name {name!r} must be a DNS-1035 label of at most 63 characters")
    if kind in {"Deployment", "StatefulSet"} and not (DNS_1123_LABEL.match(name) and len(name) <= 63):
        problems.append(f"{kind} name {name!r} must be a DNS-1123 label (its pods' hostnames derive from it)")
    if not (DNS_1123_SUBDOMAIN.match(name) and len(name) <= 253):
        problems.append(f"{kind} name {name!r} must be a DNS-1123 subdomain")
    labels = dict(obj["metadata"].get("labels", {}))
    template = obj.get("spec", {}).get("template", {}) if isinstance(obj.get("spec"), dict) else {}
    labels.update(template.get("metadata", {}).get("labels", {}))
    for key, value in labels.items():
        if len(value) > 63 or not LABEL_VALUE.match(value):
            problems.append(f"{kind}/{name}: label {key}={value!r} is not a valid label value")
    return problems


def pod_problems(spec: dict[str, Any]) -> list[str]:
    problems = []
    grace = spec.get("terminationGracePeriodSeconds", 30)
    for container in spec["containers"]:
        sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep")
        if sleep is not None and not 0 <= sleep["seconds"] <= grace:
            problems.append("lifecycle.preStop.sleep.seconds must be within the termination grace period")
        for probe in ("livenessProbe", "startupProbe"):
            if container.get(probe, {}).get("successThreshold", 1) != 1:
                problems.append(f"{probe}.successThreshold must be 1")
    for constraint in spec.get("topologySpreadConstraints", []):
        if constraint["maxSkew"] <= 0:
            problems.append("topologySpreadConstraints.maxSkew must be greater than 0")
        if "minDomains" in constraint and constraint["whenUnsatisfiable"] != "DoNotSchedule":
            problems.append("minDomains needs whenUnsatisfiable DoNotSchedule")
        if set(constraint.get("matchLabelKeys", [])) & set(constraint["labelSelector"].get("matchLabels", {})):
            problems.append("matchLabelKeys must not repeat a key of labelSelector")
    return problems


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_every_object_passes_the_api_servers_own_validation(chart: helm.Chart, variant: Path) -> None:
    problems = []
    for obj in render(chart, load_values(variant)).objects:
        problems += name_problems(obj)
        if obj["kind"] == "HorizontalPodAutoscaler":
            problems += hpa_problems(obj)
        if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
            problems += pod_problems(obj["spec"]["template"]["spec"])
    assert not problems, problems


@pytest.mark.parametrize("variant", ["hpa", "multi-pool", "production"])
def test_the_hpa_path_renders_only_what_an_api_server_accepts(chart: helm.Chart, variant: str) -> None:
    """HPA mode over every pool layout the chart documents, at the smallest bounds the schema lets through."""
    values = load_values(CI_DIR / f"{variant}-values.yaml")
    values["autoscaling"] = {**values.get("autoscaling", {}), "mode": "hpa"}
    pools = values.get("tritonPools") or [dict(chart.values["tritonPools"][0])]
    values["tritonPools"] = [{**pool, "minReplicas": 1, "maxReplicas": 1} for pool in pools]
    hpas = render(chart, values).of_kind("HorizontalPodAutoscaler")
    assert len(hpas) == len(pools)
    for hpa in hpas:
        assert hpa_problems(hpa) == []


def test_the_hpa_rules_here_refuse_what_the_api_server_refuses() -> None:
    """The transcription is only worth something if it fails where the API server does."""
    hpa = {
        "spec": {
            "minReplicas": 0,
            "maxReplicas": 4,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 7200, "policies": []}},
            "metrics": [{"type": "Pods", "pods": {"target": {"type": "AverageValue", "averageValue": "0"}}}],
        }
    }
    assert len(hpa_problems(hpa)) == 4
