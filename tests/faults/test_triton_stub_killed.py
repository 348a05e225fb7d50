"""A Triton Python backend stub killed (SIGKILL) while a response is being generated.

What Triton 2.51 does (observed, and asserted below so a change shows up): the request in flight never
gets an answer, the stub is *not* restarted, and the model still reports READY while every request
fails with "Stub process '<model>_0_0' is not healthy", until an operator reloads the model
(repository API, explicit model control; a plain ``load`` of the unchanged model is a no-op, so the
reload carries a config override). Sometimes the whole server aborts instead (the stub died holding a
shared-memory lock: ``boost::interprocess::lock_exception``); then it is restarted, as a supervisor
would. Either way the orchestrator's stream deadline ends the hung turn, the session survives, and
its next turn rebuilds the context from Redis.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from minmo.v1 import minmo_pb2 as pb

from orchestrator.state.store import SessionStore
from tests.faults.conftest import attempts
from tests.faults.conversation import CONFIG, FaultSession
from tests.faults.processes import Orchestrators, RestartableTriton
from tests.faults.table import FaultTable
from tests.integration.helpers import run_stub_probe

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# Alternate between the session's long-lived context (backbone) and a per-turn stage (vocoder).
MODELS = ("backbone", "vocoder")


@pytest.mark.parametrize("attempt", attempts())
async def test_a_killed_stub_fails_the_turn_and_the_session_goes_on(
    attempt: int,
    fault_triton: RestartableTriton,
    orchestrators: Orchestrators,
    fault_store: SessionStore,
    fault_table: FaultTable,
    deadline_seconds: float,
) -> None:
    model = MODELS[attempt % len(MODELS)]
    session = FaultSession(orchestrators.primary.address)
    started = await session.open(pb.SessionStart(config=CONFIG))
    await session.turn(f"stub {attempt}: hello there")
    victim = await session.send_text(f"stub {attempt}: tell me a long story")
    await session.first_audio(victim)
    stub = fault_triton.stub_of(model)
    assert stub is not None, f"no live stub for {model}"
    stub.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    failed = await session.done(victim, within=deadline_seconds + 15)
    noticed_s = time.monotonic() - killed_at
    errors = [e.error for e in session.client.of("error")]

    await asyncio.sleep(0.5)
    if fault_triton.alive:
        restarted = fault_triton.stub_of(model) is not None  # does Triton bring the stub back by itself?
        outcome = "stub restarted by Triton" if restarted else "stub not restarted, model reloaded by the operator"
        if not restarted:
            # Triton's own health says nothing (the model is READY); the liveness probe of the chart notices.
            verdict, report, _ = await asyncio.to_thread(run_stub_probe, fault_triton.grpc_url)
            assert verdict == 1 and f"{model}: DEAD" in report, report
            await fault_triton.reload(model)  # the operator's fix, through the repository API
            assert fault_triton.stub_of(model) is not None
    else:  # the server itself aborted (a stub died holding a shared-memory lock): its supervisor restarts it
        restarted, outcome = False, "tritonserver aborted with the stub (boost lock_exception), restarted"
        await asyncio.to_thread(fault_triton.restart)
    after = await session.turn(f"stub {attempt}: are you still there?")
    await session.close()

    history = await fault_store.history(started.session_id, include_speech=False)
    lost, duplicated = session.ledger.audit(history)
    survived = after.status == pb.INTERRUPTED and session.client.error is None
    fault_table.record(
        "Triton stub killed mid-response",
        survived=survived,
        lost=lost,
        duplicated=duplicated,
        note=outcome,
    )
    assert failed.status == pb.FAILED and failed.text == ""
    assert errors and all(e.code == "UNAVAILABLE" for e in errors), errors
    assert noticed_s < deadline_seconds + 10, f"the failure took {noticed_s:.1f} s to reach the client"
    assert not restarted, "Triton restarted the stub itself: the operator's reload is no longer needed"
    assert survived and lost == 0 and duplicated == 0
    assert [(t.role, t.text) for t in history] == session.ledger.acknowledged
    assert [t.sequence for t in history] == list(range(1, len(history) + 1))
    await fault_store.delete(started.session_id)
