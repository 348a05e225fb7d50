"""Fixtures shared by all tiers: the smoke weights (built once if missing) and the real Triton server.

Triton is started once per test session, on free ports, by the first test that asks for it (the
integration and fuzz tiers); one server for the whole run keeps `make test` from paying its start twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.devstack.triton_launcher import (
    StackError,
    TritonPorts,
    TritonProcess,
    free_port,
    start_triton,
    wait_until_ready,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE_WEIGHTS = REPO_ROOT / "weights" / "smoke"


@pytest.fixture(scope="session")
def smoke_weights() -> Path:
    """The smoke weights folder; `make test` builds it first, a bare pytest run builds it here."""
    if not (SMOKE_WEIGHTS / "vocoder" / "config.json").is_file():
        from services.build_weights import build_smoke_weights

        build_smoke_weights(SMOKE_WEIGHTS)
    return SMOKE_WEIGHTS


@pytest.fixture(scope="session")
def triton(smoke_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    run_dir = tmp_path_factory.mktemp("triton")
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    # Explicit model control lets a test reload a model with other parameters (idle expiry).
    explicit = ("--model-control-mode=explicit", "--load-model=*")
    server = start_triton(REPO_ROOT / "model_repository", smoke_weights, run_dir, ports, extra_args=explicit)
    try:
        wait_until_ready(server)
    except StackError as exc:
        print(server.log_tail(200))
        pytest.fail(f"Triton did not start: {exc}")
    yield server
    server.stop()
