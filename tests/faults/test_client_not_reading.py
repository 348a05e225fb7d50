"""A client that keeps sending but stops reading: the server's memory must not grow with it.

Every event it sends answers with a server event (here: an ``error`` for each empty event), which the
client never reads; gRPC's flow control stops the writes, and the call's queue of unread events is
bounded (``--max-queued-events``): the call is cut off (RESOURCE_EXHAUSTED, or CANCELLED when not even
the status can reach a client that reads nothing), its slot and lease are freed, and the session resumes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from orchestrator.state.store import SessionStore
from tests.faults.conftest import attempts
from tests.faults.conversation import CONFIG, FaultSession
from tests.faults.processes import Orchestrators
from tests.faults.table import FaultTable

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CUT_OFF_WITHIN_S = 45.0


@pytest.fixture(scope="module")
def small_queue_orchestrator(orchestrators: Orchestrators):  # type: ignore[no-untyped-def]
    process = orchestrators.start("--max-queued-events=32")
    yield process
    process.process.terminate()
    process.process.wait(timeout=30)


@pytest.mark.parametrize("attempt", attempts(short=1))
async def test_a_client_that_stops_reading_is_cut_off_and_resumes(
    attempt: int, small_queue_orchestrator, fault_store: SessionStore, fault_table: FaultTable
) -> None:
    writer = FaultSession(small_queue_orchestrator.address)
    started = await writer.open(pb.SessionStart(config=CONFIG))
    await writer.turn(f"not reading {attempt}: hello")
    await writer.close()

    channel = grpc.aio.insecure_channel(small_queue_orchestrator.address)
    sent = asyncio.Event()

    async def flood() -> AsyncIterator[pb.ClientEvent]:
        yield pb.ClientEvent(session=pb.SessionStart(resume_token=started.resume_token))
        for _ in range(20_000):
            yield pb.ClientEvent()
        sent.set()
        await asyncio.sleep(3600)

    call = minmo_pb2_grpc.MinMoStub(channel).Converse(flood())
    begun = time.monotonic()
    resumed = FaultSession(small_queue_orchestrator.address, writer.ledger)
    again = None
    while again is None and time.monotonic() - begun < CUT_OFF_WITHIN_S:
        await asyncio.sleep(2)  # the flooding call holds the lease until it is cut off
        try:
            again = await resumed.open(pb.SessionStart(resume_token=started.resume_token), within=15)
        except AssertionError:
            await resumed.abandon()
            resumed = FaultSession(small_queue_orchestrator.address, writer.ledger)
    cut_after = time.monotonic() - begun
    events = 0
    status = grpc.StatusCode.OK
    try:
        async for _ in call:
            events += 1
    except grpc.aio.AioRpcError as exc:
        status = exc.code()
    await channel.close()
    assert again is not None, "the flooding call was never cut off"
    after = await resumed.turn(f"not reading {attempt}: back")
    await resumed.close()

    history = await fault_store.history(started.session_id, include_speech=False)
    lost, duplicated = writer.ledger.audit(history)
    survived = again.resumed and after.status == pb.INTERRUPTED
    fault_table.record(
        "a client stops reading (and keeps sending)",
        survived=survived,
        lost=lost,
        duplicated=duplicated,
        note=f"cut off with {status.name} after {cut_after:.0f} s; {events} events had been delivered",
    )
    assert status in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED), status
    assert events < 20_000, "every event was queued: no bound"
    assert survived and lost == 0 and duplicated == 0
    await fault_store.delete(started.session_id)
