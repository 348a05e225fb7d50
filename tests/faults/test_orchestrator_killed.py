"""An orchestrator process killed (SIGKILL) mid-response; the client resumes on another process.

Nothing graceful happens: the client's call breaks (UNAVAILABLE), the dead owner's lease expires
(at most 5 s), and the resume token opens the session on the surviving process with every
acknowledged turn: the user turn of the cut response is there (it was acknowledged by
``response_started``), the cut response is not (it never got its ``response_done``), nothing twice.
"""

from __future__ import annotations

import os
import signal

import grpc
import pytest
from minmo.v1 import minmo_pb2 as pb

from orchestrator.state.store import SessionStore
from tests.faults.conftest import attempts
from tests.faults.conversation import CONFIG, FaultSession
from tests.faults.processes import Orchestrators
from tests.faults.table import FaultTable

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("attempt", attempts())
async def test_resume_on_another_process_after_a_kill_mid_turn(
    attempt: int, orchestrators: Orchestrators, fault_store: SessionStore, fault_table: FaultTable
) -> None:
    victim = orchestrators.start()
    session = FaultSession(victim.address)
    started = await session.open(pb.SessionStart(config=CONFIG))
    await session.turn(f"kill {attempt}: hello")
    cut = await session.send_text(f"kill {attempt}: a long answer please")
    await session.first_audio(cut)
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    await session.until(lambda: session.client.error is not None, 10, "the broken call")
    assert session.client.error is not None
    broken = session.client.error.code()
    await session.abandon()

    resumed = FaultSession(orchestrators.primary.address, session.ledger)
    again = await resumed.open(pb.SessionStart(resume_token=started.resume_token), within=30)
    after = await resumed.turn(f"kill {attempt}: still there?")
    await resumed.close()

    history = await fault_store.history(started.session_id, include_speech=False)
    lost, duplicated = session.ledger.audit(history)
    survived = again.resumed and after.status == pb.INTERRUPTED and resumed.client.error is None
    fault_table.record("orchestrator killed mid-turn", survived=survived, lost=lost, duplicated=duplicated)
    assert broken == grpc.StatusCode.UNAVAILABLE
    assert again.session_id == started.session_id and again.history_turns == 3  # user, assistant, user
    assert survived and lost == 0 and duplicated == 0
    assert [(t.role, t.text) for t in history] == session.ledger.acknowledged
    assert [t.sequence for t in history] == list(range(1, 6))
    await fault_store.delete(started.session_id)
