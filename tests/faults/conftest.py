"""Fixtures of the fault suite: its own Triton, Redis, TCP proxy and orchestrator processes.

The orchestrators reach Triton through ``FaultyTcpProxy`` (so a test can stall the path) and keep
their sessions in this suite's own Redis (so a test can crash it). The short suite runs with
``make test``; the long one (marker ``faults_long``) only with ``--faults-long`` or
``MINMO_FAULTS_LONG=1`` (``make faults``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio

from orchestrator.state.store import SessionStore
from tests.conftest import REPO_ROOT
from tests.faults.processes import Orchestrators, RedisServer, RestartableTriton, serve_flags
from tests.faults.table import FaultTable
from tests.faults.tcp_proxy import FaultyTcpProxy

# The orchestrator's Triton deadline in this suite: short, so a stall costs seconds, not the default 10.
DEADLINE_SECONDS = 3.0
SHORT_REPEATS = 2
LONG_REPEATS = 10
TABLE = FaultTable()
OUT_DIR = REPO_ROOT / "out" / "faults"


def attempts(short: int = SHORT_REPEATS) -> list[object]:
    """Repetitions of a fault: the first ``short`` in every run, the rest (to LONG_REPEATS) only in the long suite."""
    long = pytest.mark.faults_long
    return [pytest.param(n, marks=[long] if n >= short else []) for n in range(LONG_REPEATS)]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--faults-long", action="store_true", help="also run the long fault suite (faults_long)")


def _long_enabled(config: pytest.Config) -> bool:
    # The option exists only when this conftest is an initial one (pytest tests/faults); the variable always works.
    return bool(config.getoption("--faults-long", default=False)) or os.environ.get("MINMO_FAULTS_LONG") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _long_enabled(config):
        return
    skip = pytest.mark.skip(reason="long fault suite: run `make faults` (or pytest --faults-long)")
    for item in items:
        if "faults_long" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TABLE.rows:
        return
    TABLE.write(OUT_DIR)
    terminalreporter.write_sep("-", f"fault table (also in {OUT_DIR.relative_to(REPO_ROOT)}/faults.md)")
    terminalreporter.write(TABLE.markdown())


@pytest.fixture(scope="session")
def fault_table() -> FaultTable:
    return TABLE


@pytest.fixture(scope="session")
def fault_triton(smoke_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableTriton]:
    triton = RestartableTriton(smoke_weights, tmp_path_factory.mktemp("fault-triton"))
    triton.start()
    yield triton
    triton.stop()


@pytest.fixture(scope="session")
def fault_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("fault-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def triton_path(fault_triton: RestartableTriton) -> Iterator[FaultyTcpProxy]:
    """The network path orchestrator -> Triton gRPC, which tests may stall; passing traffic between tests."""
    proxy = FaultyTcpProxy("127.0.0.1", fault_triton.ports.grpc).start()
    yield proxy
    proxy.stop()


@pytest.fixture(autouse=True)
def _path_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "triton_path" in request.fixturenames:
        request.getfixturevalue("triton_path").pass_through()


@pytest.fixture(scope="session")
def orchestrators(
    triton_path: FaultyTcpProxy, fault_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Orchestrators]:
    flag = "--triton-deadline-seconds"
    extra = (f"{flag}={DEADLINE_SECONDS}",) if flag in serve_flags() else ()
    pool = Orchestrators(tmp_path_factory.mktemp("fault-orchestrators"), triton_path.address, fault_redis.url, extra)
    pool.start()
    yield pool
    pool.stop_all()


@pytest.fixture
def deadline_seconds(orchestrators: Orchestrators) -> float:
    """The Triton deadline the orchestrators run with (the server default until it takes the flag)."""
    return DEADLINE_SECONDS if orchestrators.extra_args else 10.0


@pytest.fixture
async def fault_store(fault_redis: RedisServer) -> AsyncIterator[SessionStore]:
    """The orchestrators' store, read back by the tests (same default prefix as ``minmo serve``)."""
    client = redis.asyncio.Redis.from_url(fault_redis.url)
    yield SessionStore(client)
    await client.aclose()
