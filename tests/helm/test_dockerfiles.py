"""The Dockerfiles, checked without building them (no Docker engine here): what they copy exists and is
in the build context, base images and dependencies are pinned (to pyproject's versions), and both images
run as the numeric non-root user the chart's securityContext expects."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import helm_python as helm
import pytest

from tests.helm.chart_render import REPO_ROOT
from tests.helm.dockerfile_parse import arg_defaults, copy_sources, expand, instructions

ORCHESTRATOR = REPO_ROOT / "docker" / "orchestrator.Dockerfile"
TRITON = REPO_ROOT / "docker" / "triton.Dockerfile"
DOCKERFILES = [ORCHESTRATOR, TRITON]
IDS = ["orchestrator", "triton"]


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = [r for name in extras for r in extras[name] if not r.startswith("minmo-serve")]
    requirements += project["dependencies"]
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==(\S+)", requirement)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def dockerignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile: Path) -> None:
    sources = copy_sources(instructions(dockerfile))
    assert sources
    ignored = dockerignore_patterns()
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: no such path in the repository"
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), f"{source} is in .dockerignore"


def test_dockerignore_keeps_weights_and_local_state_out_of_the_images() -> None:
    assert {"weights", ".venv", ".git", "protos/gen"} <= set(dockerignore_patterns())


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_base_images_are_pinned_by_tag(dockerfile: Path) -> None:
    parsed = instructions(dockerfile)
    defaults = arg_defaults(parsed)
    bases = [expand(i.arguments.split()[0], defaults) for i in parsed if i.keyword == "FROM"]
    stages = {i.arguments.split()[-1] for i in parsed if i.keyword == "FROM" and " AS " in i.arguments.upper()}
    for base in bases:
        if base in stages:
            continue
        image, _, tag = base.rpartition(":")
        assert image and tag and tag != "latest" and re.search(r"\d", tag), f"{dockerfile.name}: unpinned base {base}"


def test_orchestrator_base_is_the_python_pyproject_requires() -> None:
    defaults = arg_defaults(instructions(ORCHESTRATOR))
    assert defaults["PYTHON_IMAGE"].startswith("python:3.11.")
    assert ">=3.11,<3.12" in (REPO_ROOT / "pyproject.toml").read_text()


def test_triton_base_is_the_trtllm_python_image() -> None:
    parsed = instructions(TRITON)
    (base,) = [expand(i.arguments, arg_defaults(parsed)) for i in parsed if i.keyword == "FROM"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-trtllm-python-py3", base), base


@pytest.mark.parametrize(
    ("dockerfile", "packages"),
    [
        (ORCHESTRATOR, {"GRPCIO_TOOLS_VERSION": "grpcio-tools", "MYPY_PROTOBUF_VERSION": "mypy-protobuf"}),
        (
            TRITON,
            {
                "NUMPY_VERSION": "numpy",
                "SAFETENSORS_VERSION": "safetensors",
                "KALDI_NATIVE_FBANK_VERSION": "kaldi-native-fbank",
                "PYYAML_VERSION": "pyyaml",
            },
        ),
    ],
    ids=IDS,
)
def test_build_arg_versions_match_pyproject(dockerfile: Path, packages: dict[str, str]) -> None:
    defaults = arg_defaults(instructions(dockerfile))
    pins = pyproject_pins()
    for arg, package in packages.items():
        assert defaults[arg] == pins[package], (
            f"{dockerfile.name}: {arg}={defaults[arg]}, pyproject pins {pins[package]}"
        )


@pytest.mark.parametrize(
    ("dockerfile", "values_key"), [(ORCHESTRATOR, "orchestratorUser"), (TRITON, "tritonUser")], ids=IDS
)
def test_images_end_as_the_numeric_non_root_user_the_chart_runs_them_as(
    dockerfile: Path, values_key: str, chart: helm.Chart
) -> None:
    users = [i.arguments for i in instructions(dockerfile) if i.keyword == "USER"]
    assert users, f"{dockerfile.name} has no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0), users[-1]
    assert int(uid) == chart.values["security"][values_key]


def test_orchestrator_entrypoint_is_the_minmo_command() -> None:
    parsed = instructions(ORCHESTRATOR)
    (entrypoint,) = [i.arguments for i in parsed if i.keyword == "ENTRYPOINT"]
    assert entrypoint == '["minmo"]'
    assert 'minmo = "orchestrator.cli:main"' in (REPO_ROOT / "pyproject.toml").read_text()


def test_triton_image_holds_the_model_repository_where_the_chart_looks(chart: helm.Chart) -> None:
    parsed = instructions(TRITON)
    copies = {i.arguments.split()[0]: i.arguments.split()[1] for i in parsed if i.keyword == "COPY"}
    assert copies["model_repository"] == chart.values["triton"]["modelRepository"]["imagePath"]
    assert copies["services"] == "/opt/minmo/services"
    env = " ".join(i.arguments for i in parsed if i.keyword == "ENV")
    assert "PYTHONPATH=/opt/minmo" in env


def python_modules_the_chart_runs(chart: helm.Chart) -> dict[str, set[str]]:
    """image -> modules started with `python[3] -m` by a probe, a hook or a command, in every variant."""
    from tests.helm.chart_render import load_values, pod_specs, render, variant_files

    found: dict[str, set[str]] = {}
    for variant in variant_files():
        for _, spec in pod_specs(render(chart, load_values(variant)).objects):
            for container in spec["containers"]:
                commands = [container.get("command", [])]
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    commands.append(container.get(probe, {}).get("exec", {}).get("command", []))
                commands.append(container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", []))
                for command in commands:
                    if command[:1] in (["python"], ["python3"]) and command[1:2] == ["-m"]:
                        found.setdefault(container["image"].rsplit(":", 1)[0], set()).add(command[2])
    return found


def test_every_module_a_probe_or_hook_runs_is_in_its_image(chart: helm.Chart) -> None:
    """The Triton image copies services/ (its PYTHONPATH); the orchestrator image installs the package, whose
    wheel holds orchestrator* and services*. A probe naming a module an image lacks would fail forever."""
    found = python_modules_the_chart_runs(chart)
    triton_image = chart.values["images"]["triton"]["repository"]
    orchestrator_image = chart.values["images"]["orchestrator"]["repository"]
    assert found[triton_image] == {"services.triton.stub_probe", "services.triton.drain_wait"}
    assert found[orchestrator_image] == {"orchestrator.autoscaler.heartbeat", "orchestrator.deploy.redis_password"}
    copied = copy_sources(instructions(TRITON))
    for module in found[triton_image]:
        path = module.replace(".", "/") + ".py"
        assert (REPO_ROOT / path).is_file() and path.split("/")[0] in copied, module
    packaged = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for module in found[orchestrator_image]:
        assert (REPO_ROOT / (module.replace(".", "/") + ".py")).is_file(), module
        assert any(fnmatch.fnmatch(module.rsplit(".", 1)[0], pattern) for pattern in packaged["include"]), module
        for package in module.split(".")[:-1]:
            prefix = module[: module.index(package) + len(package)].replace(".", "/")
            assert (REPO_ROOT / prefix / "__init__.py").is_file(), f"{prefix} is not a package: not in the wheel"
