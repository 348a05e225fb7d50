"""A client whose network stalls silently (packets stop, nothing closes), then comes back and resumes.

The server cannot tell a silent client from a dead one except by keepalive pings: with them the stalled
transport is closed within ``--keepalive-seconds`` + ``--keepalive-timeout-seconds``, the call ends, its
owner lease is released, and the client's own resume (on a new connection) works within seconds, not
never (without pings the stalled call would keep refreshing the lease and refuse every resume).
"""

from __future__ import annotations

import time

import pytest
from minmo.v1 import minmo_pb2 as pb

from orchestrator.state.store import SessionStore
from tests.faults.conftest import attempts
from tests.faults.conversation import CONFIG, FaultSession
from tests.faults.processes import Orchestrators
from tests.faults.table import FaultTable
from tests.faults.tcp_proxy import FaultyTcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEEPALIVE = ("--keepalive-seconds=2", "--keepalive-timeout-seconds=2")
RESUME_WITHIN_S = 20.0


@pytest.fixture(scope="module")
def keepalive_orchestrator(orchestrators: Orchestrators):  # type: ignore[no-untyped-def]
    process = orchestrators.start(*KEEPALIVE)
    yield process
    process.process.terminate()
    process.process.wait(timeout=30)


@pytest.mark.parametrize("attempt", attempts(short=1))
async def test_a_stalled_client_can_resume_within_seconds(
    attempt: int, keepalive_orchestrator, fault_store: SessionStore, fault_table: FaultTable
) -> None:
    path = FaultyTcpProxy("127.0.0.1", keepalive_orchestrator.port).start()
    try:
        session = FaultSession(path.address)
        started = await session.open(pb.SessionStart(config=CONFIG))
        await session.turn(f"client stall {attempt}: hello")
        path.stall()
        stalled = time.monotonic()
        resumed = FaultSession(keepalive_orchestrator.address, session.ledger)
        again = None
        while again is None and time.monotonic() - stalled < RESUME_WITHIN_S + 10:
            try:
                again = await resumed.open(pb.SessionStart(resume_token=started.resume_token), within=15)
            except AssertionError:  # FAILED_PRECONDITION: still live on the stalled connection; retry
                await resumed.abandon()
                resumed = FaultSession(keepalive_orchestrator.address, session.ledger)
        resumed_after = time.monotonic() - stalled
        assert again is not None
        after = await resumed.turn(f"client stall {attempt}: back")
        await resumed.close()
        await session.abandon()
    finally:
        path.stop()

    history = await fault_store.history(started.session_id, include_speech=False)
    lost, duplicated = session.ledger.audit(history)
    survived = again.resumed and after.status == pb.INTERRUPTED
    fault_table.record(
        "a client's network stalls silently, then it resumes",
        survived=survived,
        lost=lost,
        duplicated=duplicated,
        note=f"keepalive 2 s + 2 s: resumed {resumed_after:.1f} s after the stall",
    )
    assert resumed_after < RESUME_WITHIN_S, f"the client could resume only after {resumed_after:.1f} s"
    assert survived and lost == 0 and duplicated == 0
    assert [(t.role, t.text) for t in history] == session.ledger.acknowledged
    await fault_store.delete(started.session_id)
