"""Integration tier: the Triton log printed when a test fails, and a client for the session Triton."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from orchestrator.devstack.triton_launcher import TritonProcess
from orchestrator.triton.client import TritonModels
from tests.integration.autoscaler_fixtures import api, prefix, redis

__all__ = ["api", "prefix", "redis"]  # the autoscaler tests' fixtures


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
