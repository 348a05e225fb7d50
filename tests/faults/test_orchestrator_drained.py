"""An orchestrator drained with SIGTERM mid-conversation (a rolling update, a scale-down).

The drain (``orchestrator.server.drain``): readiness NOT_SERVING and new calls refused at once, the
response in flight cut to what was played, stored and reported (``response_done`` INTERRUPTED), then
the call ends with UNAVAILABLE and a message to resume with the token; the process exits within
``--drain-seconds``. The client resumes on another ``minmo serve``: every acknowledged turn is there,
none twice, and the conversation goes on.
"""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import pytest
from minmo.v1 import minmo_pb2 as pb

from orchestrator.devstack.orchestrator_process import health_status
from orchestrator.state.store import SessionStore
from tests.faults.conftest import attempts
from tests.faults.conversation import CONFIG, FaultSession
from tests.faults.processes import Orchestrators
from tests.faults.table import FaultTable

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DRAIN_SECONDS = 8.0


@pytest.mark.parametrize("attempt", attempts(short=1))
async def test_a_drained_orchestrator_hands_its_sessions_over_with_nothing_lost(
    attempt: int, orchestrators: Orchestrators, fault_store: SessionStore, fault_table: FaultTable
) -> None:
    victim = orchestrators.start(f"--drain-seconds={DRAIN_SECONDS}")
    session = FaultSession(victim.address)
    started = await session.open(pb.SessionStart(config=CONFIG))
    await session.turn(f"drain {attempt}: hello")
    cut = await session.send_text(f"drain {attempt}: a long answer please")
    await session.first_audio(cut)

    signalled = time.monotonic()
    victim.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    readiness = await asyncio.to_thread(health_status, victim.address)
    await session.until(lambda: session.client.error is not None, DRAIN_SECONDS, "the drained call's status")
    assert session.client.error is not None
    status, details = session.client.error.code(), session.client.error.details() or ""
    interrupted = [e.response_done for e in session.client.of("response_done") if e.response_done.response_id == cut]
    if interrupted and interrupted[0].status == pb.INTERRUPTED:
        session.ledger.acknowledged.append(("assistant", interrupted[0].text))
    await session.abandon()
    exit_code = await asyncio.to_thread(victim.process.wait, DRAIN_SECONDS + 5)
    exited_after = time.monotonic() - signalled

    resumed = FaultSession(orchestrators.primary.address, session.ledger)
    again = await resumed.open(pb.SessionStart(resume_token=started.resume_token), within=30)
    after = await resumed.turn(f"drain {attempt}: still there?")
    await resumed.close()

    history = await fault_store.history(started.session_id, include_speech=False)
    lost, duplicated = session.ledger.audit(history)
    survived = again.resumed and after.status == pb.INTERRUPTED and resumed.client.error is None
    fault_table.record(
        "orchestrator drained (SIGTERM) mid-response",
        survived=survived,
        lost=lost,
        duplicated=duplicated,
        note=f"call ends UNAVAILABLE with a resume message; the process exits within --drain-seconds {DRAIN_SECONDS:g}",
    )
    assert readiness in ("NOT_SERVING", "UNAVAILABLE"), readiness  # NOT_SERVING, or already refusing calls
    assert status == grpc.StatusCode.UNAVAILABLE and "resume" in details, (status, details)
    assert interrupted and interrupted[0].status == pb.INTERRUPTED, "the cut response was not stored and reported"
    assert exit_code == 0 and exited_after < DRAIN_SECONDS + 1, (exit_code, exited_after, victim.log_tail())
    assert survived and lost == 0 and duplicated == 0
    assert [(t.role, t.text) for t in history] == session.ledger.acknowledged
    await fault_store.delete(started.session_id)
