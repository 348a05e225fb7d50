"""Each image holds every project package its code imports (no Docker engine here: the Dockerfiles are read).

The Triton image runs the adapters (``model_repository/*/1/model.py``) and its probes from ``/opt/minmo``
(its PYTHONPATH), so every top-level package they import, transitively within the repository, must be
COPYed there; the orchestrator image installs the wheel, so the build stage must copy what the package
discovery of pyproject.toml includes. ``minmo_contracts`` is the package both sides share.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from setuptools import find_packages

from tests.helm.dockerfile_parse import copy_sources, instructions

REPO_ROOT = Path(__file__).resolve().parents[2]
TRITON = REPO_ROOT / "docker" / "triton.Dockerfile"
ORCHESTRATOR = REPO_ROOT / "docker" / "orchestrator.Dockerfile"
TRITON_ENTRY_POINTS = [
    *sorted(REPO_ROOT.glob("model_repository/*/1/model.py")),
    REPO_ROOT / "services" / "triton" / "stub_probe.py",
    REPO_ROOT / "services" / "triton" / "drain_wait.py",
]


def _module_file(module: str) -> Path | None:
    base = REPO_ROOT / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def project_packages_imported(entry_points: list[Path]) -> set[str]:
    """Top-level repository packages reached by following imports from ``entry_points``."""
    seen: set[Path] = set()
    found: set[str] = set()
    queue = list(entry_points)
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                target = _module_file(name)
                if target is not None:
                    found.add(name.split(".")[0])
                    queue.append(target)
    return found


def test_the_triton_image_copies_every_package_the_adapters_and_probes_import() -> None:
    needed = project_packages_imported(TRITON_ENTRY_POINTS)
    assert {"services", "minmo_contracts"} <= needed
    copied = {source.split("/")[0] for source in copy_sources(instructions(TRITON))}
    assert needed <= copied, f"docker/triton.Dockerfile must COPY {sorted(needed - copied)} into /opt/minmo"


def test_the_orchestrator_wheel_holds_the_contracts() -> None:
    find = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = set(find_packages(str(REPO_ROOT), include=find["include"]))
    assert {"minmo_contracts", "orchestrator", "services"} <= packages
    needed = project_packages_imported(sorted((REPO_ROOT / "orchestrator").rglob("*.py")))
    assert "minmo_contracts" in needed
    copied = {source.split("/")[0] for source in copy_sources(instructions(ORCHESTRATOR))}
    assert needed <= copied, f"docker/orchestrator.Dockerfile's build stage must COPY {sorted(needed - copied)}"
    assert needed <= {p.split(".")[0] for p in packages}
