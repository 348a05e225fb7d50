"""Renders the chart with the real Helm engine (libhelm_c from helm-python-sdk), offline.

The values variants are the chart-testing files under ``helm/minmo-serve/ci/``: whatever a test checks
for "every variant" covers exactly what the chart documents as supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "minmo-serve"
CI_DIR = CHART_DIR / "ci"
RELEASE = "minmo-serve"
NAMESPACE = "voice"
# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion: >=1.27, where gRPC probes are GA) and
# the newest kubernetes-validate ships schemas for. The oldest catches fields only newer clusters accept;
# the newest catches fields that were removed.
KUBE_VERSION = "1.27.0"
KUBE_VERSIONS = (KUBE_VERSION, "1.37.0")

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """One render: the objects, and NOTES.txt (what `helm install` prints)."""

    objects: list[Manifest]
    notes: str

    def find(self, kind: str, name: str) -> Manifest:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise LookupError(f"{kind}/{name} not rendered; have {sorted(kind_names(self.objects))}")

    def of_kind(self, kind: str) -> list[Manifest]:
        return [obj for obj in self.objects if obj["kind"] == kind]


def kind_names(objects: list[Manifest]) -> set[str]:
    return {f"{obj['kind']}/{obj['metadata']['name']}" for obj in objects}


def variant_files() -> list[Path]:
    return sorted(CI_DIR.glob("*-values.yaml"))


def load_values(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    return loaded or {}


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> Rendered:
    """Render like `helm template minmo-serve helm/minmo-serve -n voice -f values.yaml`; raises on bad values."""
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[Manifest] = []
    notes = ""
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(objects, notes)


def hook(obj: Manifest) -> bool:
    """A Helm hook (runs around install/upgrade), not part of the release's steady state."""
    return "helm.sh/hook" in obj["metadata"].get("annotations", {})


def pod_specs(objects: list[Manifest]) -> list[tuple[str, Manifest]]:
    """(kind/name, pod spec) of every workload."""
    return [
        (f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"])
        for obj in objects
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}
    ]
