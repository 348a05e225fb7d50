"""The tritonserver command line each pool renders is accepted by the real tritonserver binary.

The binary is the one the nvidia-pytriton wheel ships (the local stack runs it). The repository is swapped
for an empty folder, so the server parses every flag, records the pool's startup models and then stops
because none is there: seconds, no model load, no GPU. A flag it does not know makes it print its usage
instead, which fails the test.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import helm_python as helm
import pytest

from orchestrator.devstack.triton_launcher import free_port, pytriton_dist, server_env
from tests.helm.chart_render import CI_DIR, load_values, render

VARIANTS = ["default", "multi-pool", "object-store"]


def pool_commands(chart: helm.Chart, variant: str) -> dict[str, list[str]]:
    rendered = render(chart, load_values(CI_DIR / f"{variant}-values.yaml"))
    commands = {}
    for deployment in rendered.of_kind("Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        if container["name"] == "tritonserver":
            commands[deployment["metadata"]["name"]] = container["command"] + container["args"]
    return commands


def run_on_empty_repository(command: list[str], repository: Path) -> str:
    """Local binary, empty repository, free ports; everything else exactly as rendered."""
    ports = {"--http-port": free_port(), "--grpc-port": free_port(), "--metrics-port": free_port()}
    args = [str(pytriton_dist() / "bin" / "tritonserver")]
    for arg in command[1:]:
        flag = arg.split("=", 1)[0]
        if flag == "--model-repository":
            arg = f"--model-repository={repository}"
        elif flag in ports:
            arg = f"{flag}={ports[flag]}"
        args.append(arg)
    done = subprocess.run(args, env=server_env(), capture_output=True, text=True, timeout=120, check=False)
    return done.stdout + done.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_tritonserver_accepts_each_pool_command_and_loads_only_its_models(
    chart: helm.Chart, variant: str, tmp_path: Path
) -> None:
    for name, command in pool_commands(chart, variant).items():
        assert command[0] == "tritonserver"
        output = run_on_empty_repository(command, tmp_path)
        assert "Usage: tritonserver" not in output, f"{name}: tritonserver rejected {command}:\n{output[-2000:]}"
        wanted = {arg.removeprefix("--load-model=") for arg in command if arg.startswith("--load-model=")}
        startup = set(re.findall(r"\|\s*startup_models_\d+\s*\|\s*(\w+)\s*\|", output))
        assert startup == wanted, f"{name}: {output[-2000:]}"
        for model in wanted:
            assert f"failed to poll model '{model}'" in output, output[-2000:]
