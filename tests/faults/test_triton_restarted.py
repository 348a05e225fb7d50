"""Triton crashes mid-response and is started again on the same ports.

Every Triton-side state is gone (the backbone's KV context, the encoder and duplex windows); Redis
still holds the acknowledged history. A turn in flight fails with an UNAVAILABLE error event and a
FAILED ``response_done``; an idle session's next turn is refused once the same way. The call stays
open, the orchestrator reconnects (its reconnect backoff is capped at 2 s) and the session's next
turn runs on a context rebuilt from Redis.
"""

from __future__ import annotations

import asyncio

import pytest
from minmo.v1 import minmo_pb2 as pb

from orchestrator.state.store import SessionStore
from tests.faults.conftest import attempts
from tests.faults.conversation import CONFIG, FaultSession
from tests.faults.processes import Orchestrators, RestartableTriton
from tests.faults.table import FaultTable

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("attempt", attempts())
async def test_sessions_survive_a_triton_restart(
    attempt: int,
    fault_triton: RestartableTriton,
    orchestrators: Orchestrators,
    fault_store: SessionStore,
    fault_table: FaultTable,
) -> None:
    mid_response = attempt % 2 == 0  # odd attempts restart Triton while the session is idle between turns
    session = FaultSession(orchestrators.primary.address)
    started = await session.open(pb.SessionStart(config=CONFIG))
    await session.turn(f"restart {attempt}: good morning")
    if mid_response:
        victim = await session.send_text(f"restart {attempt}: describe the ocean")
        await session.first_audio(victim)
        restart = asyncio.create_task(asyncio.to_thread(fault_triton.restart))
        failed = await session.done(victim, within=30)
        assert failed.status == pb.FAILED
        await restart
    else:
        await asyncio.to_thread(fault_triton.restart)
    # An idle session learns of the lost context from its next turn: refused once (UNAVAILABLE), then rebuilt.
    after = await session.turn(f"restart {attempt}: and the mountains?")
    errors = [e.error for e in session.client.of("error")]
    await session.close()

    history = await fault_store.history(started.session_id, include_speech=False)
    lost, duplicated = session.ledger.audit(history)
    survived = after.status == pb.INTERRUPTED and session.client.error is None
    fault_table.record("Triton restarted", survived=survived, lost=lost, duplicated=duplicated)
    assert errors and all(e.code == "UNAVAILABLE" for e in errors), errors
    assert survived and lost == 0 and duplicated == 0
    assert [(t.role, t.text) for t in history] == session.ledger.acknowledged
    await fault_store.delete(started.session_id)
