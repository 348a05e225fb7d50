"""Issue 13, point 1: every RPC is admitted, and Triton-side stream state cannot be taken over.

The attack as a new user would try it: Transcribe calls that send only their config each opened a
backbone session on Triton (no admission), and at the backbone's 64 streams the model evicted the
least recently used one: a live conversation's context. Now Transcribe and Synthesize take the same
process and tenant slots as Converse, and a model at capacity refuses a new stream (clear error,
RESOURCE_EXHAUSTED at the orchestrator) instead of evicting anyone's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from orchestrator.devstack.triton_launcher import TritonProcess
from orchestrator.errors import as_domain_error
from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.client import TritonModels
from orchestrator.triton.errors import TritonCapacityError
from tests.integration.converse_client import ConverseClient
from tests.integration.helpers import collect, open_streams
from tests.integration.orchestrator_fixture import running_orchestrator

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CONFIG = pb.SessionConfig(turn_detection=pb.TURN_DETECTION_CLIENT, max_response_tokens=8)


async def _config_only(release: asyncio.Event) -> AsyncIterator[pb.TranscribeRequest]:
    yield pb.TranscribeRequest(config=pb.TranscribeConfig(task=pb.ASR))
    await release.wait()  # then nothing: a client that holds the call open


async def _answered(client: ConverseClient, text: str, within: float) -> str:
    """Send a typed turn; the kind of the first answer to it (``response_started`` or ``error``)."""
    before = len(client.events)
    client.send(text=pb.TextInput(text=text))
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for event in client.events[before:]:
            if event.WhichOneof("event") in ("response_started", "error"):
                return str(event.WhichOneof("event"))
        if client.error is not None:
            return f"call ended: {client.error.code().name}"
        await asyncio.sleep(0.05)
    return "no answer"


async def test_config_only_transcribe_calls_cannot_take_a_live_conversations_streams(triton: TritonProcess) -> None:
    async with running_orchestrator(triton.grpc_url, shedding=True, max_sessions=8) as orchestrator:
        client = ConverseClient(orchestrator.channel)
        client.send(session=pb.SessionStart(config=CONFIG))
        await client.wait_for("session_started")
        assert await _answered(client, "hello", within=30) == "response_started"
        await client.wait_for("response_done", within=60)

        stub = minmo_pb2_grpc.MinMoStub(orchestrator.channel)
        release = asyncio.Event()
        calls = [stub.Transcribe(_config_only(release)) for _ in range(70)]
        refused = 0
        try:
            await asyncio.sleep(5)  # every call has sent its config and been admitted or refused
            for call in calls:
                if call.done():
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await call.read()
                    if await call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        refused += 1
                        assert "retry" in (await call.details())
            assert refused >= 70 - 8, f"only {refused} of 70 config-only calls were refused"
            assert open_streams(triton.ports.metrics, "backbone") < 64
            # The live conversation keeps its context: its next turn is answered at once.
            assert await _answered(client, "still there?", within=20) == "response_started"
            await client.wait_for("response_done", count=2, within=60)
        finally:
            release.set()
            for call in calls:
                call.cancel()
            client.send(end=pb.EndSession())
            await client.close()


async def test_a_model_at_capacity_refuses_a_new_stream_and_evicts_no_one(
    models: TritonModels, triton: TritonProcess
) -> None:
    """The duplex model: the first stream outlives the others; the one past the bound is refused, clearly
    and at once (below the sequence batcher's 256 slots, which would queue it silently instead)."""
    frame = {"HIDDEN": np.zeros((1, 256), np.float32), "SPEAKING": np.array([False])}
    first = new_stream_id()
    await models.infer("duplex", frame, sequence_id=first, start=True)
    opened = [first]
    try:
        refusal = None
        for _ in range(256):
            stream_id = new_stream_id()
            try:
                await models.infer("duplex", frame, sequence_id=stream_id, start=True)
            except TritonCapacityError as exc:
                refusal = exc
                break
            opened.append(stream_id)
        assert refusal is not None and "capacity" in refusal.message, "no refusal below the batcher's slots"
        held = int(open_streams(triton.ports.metrics, "duplex"))
        assert held < 256
        error = as_domain_error(refusal)
        assert error is not None and error.code_name == "RESOURCE_EXHAUSTED", error
        with pytest.raises(TritonCapacityError):  # still full: refused again, not queued
            await models.infer("duplex", frame, sequence_id=new_stream_id(), start=True)
        await models.infer("duplex", frame, sequence_id=first)  # not evicted: still known
    finally:
        for stream_id in opened:
            with contextlib.suppress(Exception):
                await models.infer("duplex", frame, sequence_id=stream_id, end=True)


async def test_a_backbone_stream_at_capacity_is_refused_on_a_stream_request(
    models: TritonModels, triton: TritonProcess
) -> None:
    """A decoupled model's refusal arrives as a streamed error: the same class, the same mapping."""
    streams = []
    try:
        free = 64 - int(open_streams(triton.ports.metrics, "backbone"))
        ids = [new_stream_id() for _ in range(free)]
        for stream_id in ids:
            stream = models.open_stream("backbone")
            streams.append((stream, stream_id))
            await collect(stream, {"INPUT_IDS": np.array([1, 2], np.int32)}, sequence_id=stream_id, start=True)
        extra = models.open_stream("backbone")
        with pytest.raises(TritonCapacityError, match="capacity"):
            await collect(extra, {"INPUT_IDS": np.array([1], np.int32)}, sequence_id=new_stream_id(), start=True)
        await extra.close()
        first, first_id = streams[0]
        await collect(first, {"INPUT_IDS": np.array([3], np.int32)}, sequence_id=first_id)  # still known
    finally:
        for stream, stream_id in streams:
            with contextlib.suppress(Exception):
                await collect(stream, {"MAX_NEW_TOKENS": np.array([0], np.int32)}, sequence_id=stream_id, end=True)
            await stream.close()
