"""The network path orchestrator -> Triton stalls mid-response: packets stop, no connection closes.

Only a deadline can notice this. The orchestrator's Triton deadline (``--triton-deadline-seconds``;
3 s in this suite, 10 s by default) ends the waiting call: the client gets an UNAVAILABLE error event
and a FAILED ``response_done`` within the deadline, never a hang. While the path stays stalled a new
turn is refused the same way (after one deadline). Once traffic passes again, the session goes on.
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


@pytest.mark.parametrize("attempt", attempts())
async def test_a_stalled_path_fires_the_deadline_not_a_hang(
    attempt: int,
    triton_path: FaultyTcpProxy,
    orchestrators: Orchestrators,
    fault_store: SessionStore,
    fault_table: FaultTable,
    deadline_seconds: float,
) -> None:
    session = FaultSession(orchestrators.primary.address)
    started = await session.open(pb.SessionStart(config=CONFIG))
    await session.turn(f"stall {attempt}: hi")
    victim = await session.send_text(f"stall {attempt}: talk about trains")
    await session.first_audio(victim)
    triton_path.stall()
    stalled_at = time.monotonic()
    failed = await session.done(victim, within=deadline_seconds + 20)
    noticed_s = time.monotonic() - stalled_at
    errors_during = session.count("error")
    session.client.send(text=pb.TextInput(text=f"stall {attempt}: anyone there?"))  # still stalled
    await session.until(lambda: session.count("error") > errors_during, deadline_seconds + 20, "a refusal")
    refused = session.client.of("error")[-1].error
    assert session.count("response_started") == 2, "a turn was accepted while the path was stalled"
    triton_path.pass_through()
    after = await session.turn(f"stall {attempt}: back again")
    await session.close()

    history = await fault_store.history(started.session_id, include_speech=False)
    lost, duplicated = session.ledger.audit(history)
    survived = after.status == pb.INTERRUPTED and session.client.error is None
    fault_table.record(
        "orchestrator-Triton path stalled",
        survived=survived,
        lost=lost,
        duplicated=duplicated,
        note=f"the client heard of it through the {deadline_seconds:g} s Triton deadline (UNAVAILABLE), no hang",
    )
    assert failed.status == pb.FAILED
    assert noticed_s < deadline_seconds * 2 + 5, f"the stall took {noticed_s:.1f} s to reach the client"
    assert all(e.error.code == "UNAVAILABLE" for e in session.client.of("error"))
    assert "unavailable" in refused.message
    assert survived and lost == 0 and duplicated == 0
    assert [(t.role, t.text) for t in history] == session.ledger.acknowledged
    await fault_store.delete(started.session_id)
