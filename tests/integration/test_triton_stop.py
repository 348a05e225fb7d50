"""Stopping work on the real Triton without cancelling an RPC (Triton 2.51 can crash on a cancelled call).

What a caller sees: a stopped generation ends within a few steps, the stream's call ends with OK
(never CANCELLED), the stream's next request generates normally, and a caller that stops waiting for
a unary call leaves that call to finish on the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from orchestrator.devstack.triton_launcher import TritonPorts, TritonProcess, free_port, start_triton, wait_until_ready
from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.client import TritonModels
from services import backbone
from services.smoke_seeds import BACKBONE_SEED
from tests.conftest import REPO_ROOT
from tests.integration.helpers import collect

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def babbling_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """A Triton serving only a backbone with the seeded, untrained smoke weights.

    These tests need a generation that is still running when the STOP arrives. The shipped smoke
    backbone is trained to end every reply within a few dozen tokens; the seeded one babbles until
    STOP or ``MAX_NEW_TOKENS``, so what is tested is the STOP, not how soon a reply ends by itself.
    """
    weights = tmp_path_factory.mktemp("seeded-weights")
    backbone.save(backbone.build_smoke(BACKBONE_SEED), weights / "backbone", profile="smoke")
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    only_backbone = ("--model-control-mode=explicit", "--load-model=backbone")
    run_dir: Path = tmp_path_factory.mktemp("triton-seeded")
    server = start_triton(REPO_ROOT / "model_repository", weights, run_dir, ports, extra_args=only_backbone)
    try:
        wait_until_ready(server)
        yield server
    finally:
        server.stop()


@pytest.fixture
async def models(babbling_triton: TritonProcess) -> AsyncIterator[TritonModels]:
    client = TritonModels(babbling_triton.grpc_url)
    yield client
    await client.close()


PROMPT = np.arange(10, 20, dtype=np.int32)
LIMIT = 2000


def _long_generation() -> dict[str, np.ndarray]:
    # Greedy: sampling could draw a stop token and end the generation before the stop.
    return {
        "INPUT_IDS": PROMPT,
        "MAX_NEW_TOKENS": np.array([LIMIT], np.int32),
        "TEMPERATURE": np.array([0.0], np.float32),
    }


async def _context_length_then_generate(models: TritonModels, session: int, tokens: int) -> tuple[int, int]:
    """Context length before a new request of ``tokens`` greedy tokens, and how many it generated.

    Requests of one sequence run in order on the server, so this is answered only after whatever the
    session was generating has ended.
    """
    probe = models.open_stream("backbone")
    request = {
        "INPUT_IDS": np.zeros(0, np.int32),
        "MAX_NEW_TOKENS": np.array([tokens], np.int32),
        "TEMPERATURE": np.array([0.0], np.float32),
    }
    prefill, *generated = await collect(probe, request, sequence_id=session)
    await collect(probe, {"INPUT_IDS": np.zeros(0, np.int32)}, sequence_id=session, end=True)
    await probe.close()
    return int(prefill["CONTEXT_LENGTH"][0]), len(generated)


async def test_a_stopped_generation_ends_with_ok_and_the_session_generates_again(models: TritonModels) -> None:
    session = new_stream_id()
    stream = models.open_stream("backbone")
    seen = 0
    async for out in stream.request(_long_generation(), sequence_id=session, start=True):
        seen += int(out["TOKEN_IDS"].size)
        if seen == 3:
            stream.cancel()
            break
    assert seen == 3, "generation ended on its own before it could be stopped"
    # Triton answered the STOP and the half-close: the call ended normally, nothing was cancelled.
    assert await asyncio.wait_for(stream.wait_ended(), 10) == grpc.StatusCode.OK

    length, generated = await _context_length_then_generate(models, session, tokens=4)
    assert 3 <= length - len(PROMPT) < LIMIT // 4, length
    # The stop mark was cleared with its acknowledgement: the next request is not stopped.
    assert generated == 4


async def test_a_stop_stops_only_its_own_request_of_the_sequence(models: TritonModels) -> None:
    """A later request for the same sequence, sent on another gRPC stream, arrives before the STOP."""
    session = new_stream_id()
    first = models.open_stream("backbone")
    responses = first.request(_long_generation(), sequence_id=session, start=True)
    async for out in responses:
        if out["TOKEN_IDS"].size:
            break
    second = models.open_stream("backbone")
    request = {
        "INPUT_IDS": np.zeros(0, np.int32),
        "MAX_NEW_TOKENS": np.array([4], np.int32),
        "TEMPERATURE": np.array([0.0], np.float32),
    }
    later = asyncio.create_task(collect(second, request, sequence_id=session))
    await asyncio.sleep(0.3)  # the later request is queued on the server behind the running generation
    assert not later.done()
    first.cancel()
    await responses.aclose()
    _prefill, *generated = await asyncio.wait_for(later, 20)
    assert len(generated) == 4
    await collect(second, {"INPUT_IDS": np.zeros(0, np.int32)}, sequence_id=session, end=True)
    await second.close()


async def test_cancelling_a_waiting_reader_stops_the_generation_without_cancelling_the_call(
    models: TritonModels,
) -> None:
    session = new_stream_id()
    stream = models.open_stream("backbone")
    first_token = asyncio.Event()

    async def read_everything() -> None:
        async for out in stream.request(_long_generation(), sequence_id=session, start=True):
            if out["TOKEN_IDS"].size:
                first_token.set()

    reader = asyncio.create_task(read_everything())
    await asyncio.wait_for(first_token.wait(), 10)
    reader.cancel()  # a barge-in cancels the task that reads the answer
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert await asyncio.wait_for(stream.wait_ended(), 10) == grpc.StatusCode.OK
    length, _ = await _context_length_then_generate(models, session, tokens=1)
    assert 1 <= length - len(PROMPT) < LIMIT // 4, length


async def test_a_unary_call_whose_caller_stopped_waiting_still_completes(triton: TritonProcess) -> None:
    models = TritonModels(triton.grpc_url)  # the shared Triton: this test calls the encoder
    try:
        await _unary_call_completes(models)
    finally:
        await models.close()


async def _unary_call_completes(models: TritonModels) -> None:
    def counts(stats: dict) -> tuple[int, int]:
        inference = stats["inference_stats"]
        return int(inference["success"].get("count", 0)), int(inference["fail"].get("count", 0))

    before = counts(await models.statistics("encoder"))
    call = asyncio.create_task(
        models.infer(
            "encoder", {"AUDIO": np.zeros(3840, np.float32)}, sequence_id=new_stream_id(), start=True, end=True
        )
    )
    await asyncio.sleep(0)  # the call is on its way
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(100):
        if counts(await models.statistics("encoder"))[0] == before[0] + 1:
            break
        await asyncio.sleep(0.05)
    assert counts(await models.statistics("encoder")) == (before[0] + 1, before[1])
