"""The orchestrator killed between the Redis append of a user turn and its acknowledgement.

The window is made real, not mocked: the process reaches Redis through ``FaultyTcpProxy``, whose
replies are held (``stall_replies``) when the user's text is sent, so the append runs in Redis while
``response_started`` can never be sent; then the process is SIGKILLed. The client follows the rule
(resend a user turn that got no ``response_started``) on another process: the turn is answered and
stored once, not twice.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from minmo.v1 import minmo_pb2 as pb

from orchestrator.state.store import SessionStore
from tests.faults.conftest import attempts
from tests.faults.conversation import CONFIG, FaultSession
from tests.faults.processes import Orchestrators, RedisServer
from tests.faults.table import FaultTable
from tests.faults.tcp_proxy import FaultyTcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("attempt", attempts(short=1))
async def test_a_turn_stored_but_never_acknowledged_is_resent_and_stored_once(
    attempt: int,
    fault_redis: RedisServer,
    orchestrators: Orchestrators,
    fault_store: SessionStore,
    fault_table: FaultTable,
) -> None:
    proxy = FaultyTcpProxy("127.0.0.1", fault_redis.port).start()
    try:
        victim = orchestrators.start(redis_url=f"redis://{proxy.address}/0")
        session = FaultSession(victim.address)
        started = await session.open(pb.SessionStart(config=CONFIG))
        await session.turn(f"append {attempt}: hello")
        stored_before = len(await fault_store.history(started.session_id, include_speech=False))

        proxy.stall_replies()
        text = f"append {attempt}: book a table"
        session.client.send(text=pb.TextInput(text=text))
        for _ in range(200):  # the append reaches Redis; its reply does not come back
            if len(await fault_store.history(started.session_id, include_speech=False)) > stored_before:
                break
            await asyncio.sleep(0.05)
        stored_unacknowledged = len(await fault_store.history(started.session_id, include_speech=False)) > stored_before
        acknowledged = bool(session.client.of("response_started")[1:])
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(timeout=10)
        await session.abandon()
    finally:
        proxy.stop()

    resumed = FaultSession(orchestrators.primary.address, session.ledger)
    again = await resumed.open(pb.SessionStart(resume_token=started.resume_token), within=30)
    response_id = await resumed.send_text(text)  # the README's rule: no response_started, so resend
    await resumed.first_audio(response_id)
    resumed.client.send(cancel=pb.CancelResponse(played_ms=600))
    await resumed.done(response_id)
    await resumed.close()

    history = await fault_store.history(started.session_id, include_speech=False)
    lost, duplicated = session.ledger.audit(history)
    survived = again.resumed and resumed.client.error is None
    fault_table.record(
        "orchestrator killed between the Redis append and the acknowledgement",
        survived=survived,
        lost=lost,
        duplicated=duplicated,
        note="the client resends the unacknowledged text (README rule); the stored turn answers it, stored once",
    )
    assert stored_unacknowledged and not acknowledged, "the fault did not hit the window"
    assert again.history_turns == stored_before + 1
    assert survived and lost == 0 and duplicated == 0
    assert [(t.role, t.text) for t in history] == session.ledger.acknowledged
    await fault_store.delete(started.session_id)
