"""An orchestrator paused (SIGSTOP) longer than its owner lease, then continued: ownership is fenced.

While it is stopped the lease runs out and the client resumes the session on another process, which
takes the lease and a new fencing token. When the stale process continues it still has the client's
last text in its socket buffer: it must not append it (the append script checks the fencing token),
its call ends with ABORTED and a message to resume, and the new owner keeps the session, turns in order.
"""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
import pytest
from minmo.v1 import minmo_pb2 as pb

from orchestrator.converse.handler import LEASE_SECONDS
from orchestrator.state.store import SessionStore
from tests.faults.conftest import attempts
from tests.faults.conversation import CONFIG, FaultSession
from tests.faults.processes import Orchestrators
from tests.faults.table import FaultTable

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("attempt", attempts(short=1))
async def test_a_paused_replica_cannot_append_behind_the_new_owners_back(
    attempt: int, orchestrators: Orchestrators, fault_store: SessionStore, fault_table: FaultTable
) -> None:
    victim = orchestrators.start()
    session = FaultSession(victim.address)
    started = await session.open(pb.SessionStart(config=CONFIG))
    await session.turn(f"pause {attempt}: hello")
    os.kill(victim.process.pid, signal.SIGSTOP)
    try:
        session.client.send(text=pb.TextInput(text=f"pause {attempt}: sent to the paused replica"))
        await asyncio.sleep(LEASE_SECONDS + 1.5)  # the lease runs out
        resumed = FaultSession(orchestrators.primary.address, session.ledger)
        again = await resumed.open(pb.SessionStart(resume_token=started.resume_token), within=30)
    finally:
        os.kill(victim.process.pid, signal.SIGCONT)
    await session.until(lambda: session.client.error is not None, 20, "the stale call's end")
    assert session.client.error is not None
    stale_status, stale_details = session.client.error.code(), session.client.error.details() or ""
    stale_acknowledged = bool(session.client.of("response_started")[1:])
    await session.abandon()
    after = await resumed.turn(f"pause {attempt}: the new owner goes on")
    await resumed.close()
    victim.process.terminate()
    victim.process.wait(timeout=30)

    history = await fault_store.history(started.session_id, include_speech=False)
    lost, duplicated = session.ledger.audit(history)
    stale_stored = any("paused replica" in t.text for t in history)
    survived = again.resumed and after.status == pb.INTERRUPTED and resumed.client.error is None and not stale_stored
    fault_table.record(
        "orchestrator paused (SIGSTOP) past its lease, then continued",
        survived=survived,
        lost=lost,
        duplicated=duplicated,
        note="the stale replica's append is fenced off; its call ends ABORTED",
    )
    assert stale_status == grpc.StatusCode.ABORTED and "resume" in stale_details, (stale_status, stale_details)
    assert not stale_acknowledged and not stale_stored
    assert survived and lost == 0 and duplicated == 0
    assert [(t.role, t.text) for t in history] == session.ledger.acknowledged
    assert [t.sequence for t in history] == list(range(1, len(history) + 1))
    await fault_store.delete(started.session_id)
