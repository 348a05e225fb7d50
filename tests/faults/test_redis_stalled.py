"""Redis stalled (SIGSTOP) in the middle of a turn, then resumed (SIGCONT): no call may hang on it.

A stopped Redis keeps its connections open and answers nothing: only timeouts notice. The call that
needs Redis (storing the response, refreshing the lease) ends with UNAVAILABLE within the stated bound
(``--redis-timeout-seconds`` x (``--redis-retries`` + 1) plus backoff: ~6.3 s, 15 s at most), never
a hang while it holds the session's lock; once Redis runs again the session resumes with its token.
A write sent just before the stall may still be carried out when Redis continues: the cut response
can then be in the history without its ``response_done`` (stored once; never a turn twice).
"""

from __future__ import annotations

import os
import signal
import time

import grpc
import pytest
from minmo.v1 import minmo_pb2 as pb

from orchestrator.state.store import SessionStore
from tests.faults.conftest import attempts
from tests.faults.conversation import CONFIG, FaultSession
from tests.faults.processes import Orchestrators, RedisServer
from tests.faults.table import FaultTable

pytestmark = [pytest.mark.integration, pytest.mark.slow]
STALL_ANSWER_S = 16.0  # the bound (15 s backstop) and a second of slack


@pytest.mark.parametrize("attempt", attempts(short=1))
async def test_a_stalled_redis_ends_the_call_in_time_and_nothing_acknowledged_is_lost(
    attempt: int,
    fault_redis: RedisServer,
    orchestrators: Orchestrators,
    fault_store: SessionStore,
    fault_table: FaultTable,
) -> None:
    session = FaultSession(orchestrators.primary.address)
    started = await session.open(pb.SessionStart(config=CONFIG))
    await session.turn(f"stall {attempt}: first")
    cut = await session.send_text(f"stall {attempt}: a long answer please")
    await session.first_audio(cut)
    assert fault_redis.process is not None
    os.kill(fault_redis.process.pid, signal.SIGSTOP)
    try:
        stalled = time.monotonic()
        session.client.send(cancel=pb.CancelResponse(played_ms=600))  # storing the cut response needs Redis
        await session.until(lambda: session.client.error is not None, STALL_ANSWER_S, "an answer while Redis stalls")
        answered_s = time.monotonic() - stalled
    finally:
        os.kill(fault_redis.process.pid, signal.SIGCONT)
    assert session.client.error is not None
    status = session.client.error.code()
    done = [e.response_done for e in session.client.of("response_done") if e.response_done.response_id == cut]
    if done and done[0].status == pb.INTERRUPTED:
        session.ledger.acknowledged.append(("assistant", done[0].text))
    await session.abandon()

    resumed = FaultSession(orchestrators.primary.address, session.ledger)
    again = await resumed.open(pb.SessionStart(resume_token=started.resume_token), within=30)
    after = await resumed.turn(f"stall {attempt}: after the stall")
    await resumed.close()

    history = await fault_store.history(started.session_id, include_speech=False)
    # The write of the cut response was sent before the stall: Redis may carry it out once it runs again. Such a
    # turn is stored (once) without its acknowledgement, at the cut response's own sequence; nothing else may be.
    late = [t for t in history if t.sequence == cut and t.role == "assistant" and not done]
    audited = [t for t in history if t not in late]
    lost, duplicated = session.ledger.audit(audited)
    survived = again.resumed and after.status == pb.INTERRUPTED and resumed.client.error is None
    fault_table.record(
        "Redis stalled (SIGSTOP) mid-response, then SIGCONT",
        survived=survived,
        lost=lost,
        duplicated=duplicated,
        note=f"the call ends UNAVAILABLE within the Redis bound (this run: {answered_s:.1f} s); a write sent before "
        "the stall may land after it (the cut response stored unacknowledged, once)",
    )
    assert status == grpc.StatusCode.UNAVAILABLE and answered_s < STALL_ANSWER_S
    assert survived and lost == 0 and duplicated == 0
    assert [(t.role, t.text) for t in audited] == session.ledger.acknowledged
    assert [t.sequence for t in history] == list(range(1, len(history) + 1))
    await fault_store.delete(started.session_id)
