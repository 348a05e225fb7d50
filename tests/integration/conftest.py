"""The real Triton server, started once per test session on free ports, with the smoke weights."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
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
from orchestrator.triton.client import TritonModels
from tests.conftest import REPO_ROOT


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


@pytest.fixture(autouse=True)
def _print_triton_log_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    server = request.node.funcargs.get("triton") if hasattr(request.node, "funcargs") else None
    if report is not None and report.failed and server is not None:
        print("---- Triton log (tail) ----\n" + server.log_tail(80))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
async def models(triton: TritonProcess) -> AsyncIterator[TritonModels]:
    client = TritonModels(triton.grpc_url)
    yield client
    await client.close()
