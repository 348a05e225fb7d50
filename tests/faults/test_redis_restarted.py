"""Redis crashes (SIGKILL) and restarts with the chart's persistence: AOF, ``appendfsync everysec``.

At-most-loss window: a write is in the append-only file at once but fsync'd within ~1 s, so a crash
of the Redis *process* loses nothing that reached it (the kernel still writes the file), and a crash
of the *machine* loses at most the last ~1 s of acknowledged writes. The test crashes the process
after the acknowledged turns are > 1 s old, the case the chart promises: every one must survive.
During the outage the client gets UNAVAILABLE (the call ends; a resume is refused the same way),
never a hang; afterwards the session resumes with its token and goes on.
"""

from __future__ import annotations

import asyncio
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
EVERYSEC_WINDOW_S = 1.0
OUTAGE_ANSWER_S = 15.0  # redis-py's own retries included; far from a hang


@pytest.mark.parametrize("attempt", attempts())
async def test_acknowledged_turns_survive_a_redis_crash(
    attempt: int,
    fault_redis: RedisServer,
    orchestrators: Orchestrators,
    fault_store: SessionStore,
    fault_table: FaultTable,
) -> None:
    session = FaultSession(orchestrators.primary.address)
    started = await session.open(pb.SessionStart(config=CONFIG))
    await session.turn(f"redis {attempt}: first")
    await session.turn(f"redis {attempt}: second")
    await asyncio.sleep(EVERYSEC_WINDOW_S + 0.5)  # the acknowledged turns are older than the fsync window
    fault_redis.crash()

    outage_started = time.monotonic()
    session.client.send(text=pb.TextInput(text=f"redis {attempt}: during the outage"))
    await session.until(lambda: session.client.error is not None, OUTAGE_ANSWER_S, "UNAVAILABLE during the outage")
    call_answer_s = time.monotonic() - outage_started
    assert session.client.error is not None
    call_status = session.client.error.code()
    await session.abandon()
    refused = FaultSession(orchestrators.primary.address, session.ledger)
    refused.client.send(session=pb.SessionStart(resume_token=started.resume_token))
    await refused.until(lambda: refused.client.error is not None, OUTAGE_ANSWER_S, "a refused resume")
    assert refused.client.error is not None
    resume_status = refused.client.error.code()
    await refused.abandon()

    await asyncio.to_thread(fault_redis.start)  # same port, same directory: the AOF is replayed
    resumed = FaultSession(orchestrators.primary.address, session.ledger)
    again = await resumed.open(pb.SessionStart(resume_token=started.resume_token))
    after = await resumed.turn(f"redis {attempt}: after the restart")
    await resumed.close()

    history = await fault_store.history(started.session_id, include_speech=False)
    lost, duplicated = session.ledger.audit(history)
    survived = again.resumed and after.status == pb.INTERRUPTED and resumed.client.error is None
    fault_table.record(
        "Redis crashed and restarted (AOF everysec)",
        survived=survived,
        lost=lost,
        duplicated=duplicated,
        note="turns acknowledged > 1 s before the crash; at-most-loss window ~1 s (machine crash), 0 (process crash)",
    )
    assert call_status == grpc.StatusCode.UNAVAILABLE and call_answer_s < OUTAGE_ANSWER_S
    assert resume_status == grpc.StatusCode.UNAVAILABLE
    assert again.history_turns == 4  # the turn sent during the outage was never acknowledged nor stored
    assert survived and lost == 0 and duplicated == 0
    assert [(t.role, t.text) for t in history] == session.ledger.acknowledged
    await fault_store.delete(started.session_id)
