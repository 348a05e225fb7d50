"""A failed start of the local stack says why: a port taken, weights missing, a model that fails."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from orchestrator.devstack.triton_launcher import StackError, TritonPorts, free_port, start_triton, wait_until_ready
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration]


def test_a_taken_port_is_named(smoke_weights: Path, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(StackError, match=f"port\\(s\\) {taken} already in use"):
            start_triton(
                REPO_ROOT / "model_repository", smoke_weights, tmp_path, TritonPorts(taken, free_port(), free_port())
            )


def test_missing_weights_say_how_to_build_them(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="make weights"):
        start_triton(REPO_ROOT / "model_repository", tmp_path / "absent", tmp_path, TritonPorts())


@pytest.mark.slow
def test_a_model_that_fails_to_load_is_named_with_its_error(smoke_weights: Path, tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(smoke_weights, weights)
    config_path = weights / "encoder" / "config.json"
    meta = json.loads(config_path.read_text())
    meta["config"]["llm_dim"] = 128  # the saved projector is 256 wide: strict loading must refuse
    config_path.write_text(json.dumps(meta))
    ports = TritonPorts(free_port(), free_port(), free_port())
    server = start_triton(REPO_ROOT / "model_repository", weights, tmp_path / "run", ports)
    try:
        with pytest.raises(StackError) as info:
            wait_until_ready(server, timeout=120)
    finally:
        server.stop()
    message = str(info.value)
    assert "failed to load 'encoder'" in message
    assert "does not fit the model config" in message and "mis-shaped" in message
