"""The five models on the real Triton server: readiness, streaming, FINAL flags, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import urllib.request

import numpy as np
import pytest

from orchestrator.devstack.triton_launcher import TritonProcess
from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.client import TritonModels
from orchestrator.triton.errors import TritonStageError
from services import encoder as encoder_stage
from services.backbone import SmokeByteTokenizer
from tests.integration.helpers import collect, open_streams

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODELS = ("encoder", "backbone", "duplex", "speech_lm", "vocoder")
LLM_DIM = 256


def test_all_five_models_are_ready(triton: TritonProcess) -> None:
    for model in MODELS:
        with urllib.request.urlopen(f"{triton.http_url}/v2/models/{model}/ready", timeout=5) as response:
            assert response.status == 200, model


async def test_backbone_streams_each_token_then_final(models: TritonModels) -> None:
    tokenizer = SmokeByteTokenizer()
    stream = models.open_stream("backbone")
    session = new_stream_id()
    prompt = np.array(tokenizer.encode("hello"), np.int32)
    outputs = await collect(
        stream,
        {"INPUT_IDS": prompt, "MAX_NEW_TOKENS": np.array([6], np.int32)},
        sequence_id=session,
        start=True,
    )
    # The request iterator returned, so the FINAL flag arrived; before it: prefill + one per token.
    prefill, tokens = outputs[0], outputs[1:]
    assert prefill["TOKEN_IDS"].size == 0
    assert prefill["HIDDEN"].shape == (len(prompt), LLM_DIM)
    assert 1 <= len(tokens) <= 6
    for position, out in enumerate(tokens, start=1):
        assert out["TOKEN_IDS"].shape == (1,)
        assert out["HIDDEN"].shape == (1, LLM_DIM)
        assert out["EMBEDDINGS"].shape == (1, LLM_DIM)
        assert int(out["CONTEXT_LENGTH"][0]) == len(prompt) + position
    await collect(stream, {"INPUT_IDS": np.zeros(0, np.int32)}, sequence_id=session, end=True)
    await stream.close()


async def test_backbone_cancellation_stops_generation(models: TritonModels) -> None:
    session = new_stream_id()
    stream = models.open_stream("backbone")
    prompt = np.arange(10, 20, dtype=np.int32)
    limit = 2000
    seen = 0
    async for out in stream.request(
        {
            "INPUT_IDS": prompt,
            "MAX_NEW_TOKENS": np.array([limit], np.int32),
            # Greedy: sampling could draw a stop token and end the generation before the cancel.
            "TEMPERATURE": np.array([0.0], np.float32),
        },
        sequence_id=session,
        start=True,
    ):
        seen += int(out["TOKEN_IDS"].size)
        if seen == 3:
            stream.cancel()
            break
    assert seen == 3, "generation ended on its own before it could be cancelled"
    # Requests of one stream run in order, so this probe is answered only once generation has stopped.
    probe = models.open_stream("backbone")
    (state,) = await collect(probe, {"INPUT_IDS": np.zeros(0, np.int32)}, sequence_id=session, end=True)
    generated = int(state["CONTEXT_LENGTH"][0]) - len(prompt)
    # The model checks for cancellation after every token; what lands beyond the 3 seen is what it
    # generated while the cancel travelled to it (a few tokens, more on a loaded machine).
    assert 3 <= generated < limit // 4, generated
    await probe.close()


async def test_speech_lm_cancellation_frees_the_stream(models: TritonModels, triton: TritonProcess) -> None:
    stream_id = new_stream_id()
    stream = models.open_stream("speech_lm")
    baseline = open_streams(triton.ports.metrics, "speech_lm")
    request = {
        "QUERY": np.random.default_rng(0).standard_normal(2 * LLM_DIM).astype(np.float32),
        # 100 groups: 1500 tokens, far more than the steps a STOP takes to arrive (a batched step is ~1 ms).
        "SEMANTIC": np.random.default_rng(1).standard_normal((500, 2 * LLM_DIM)).astype(np.float32),
        "MAX_TOKENS": np.array([4000], np.int32),
        "UNTIL_EOS": np.array([False]),
    }
    async for _ in stream.request(request, sequence_id=stream_id, start=True):
        assert open_streams(triton.ports.metrics, "speech_lm") == baseline + 1
        stream.cancel()
        break
    for _ in range(50):
        if open_streams(triton.ports.metrics, "speech_lm") == baseline:
            break
        await asyncio.sleep(0.1)
    assert open_streams(triton.ports.metrics, "speech_lm") == baseline
    again = models.open_stream("speech_lm")
    with pytest.raises(TritonStageError, match="unknown stream") as info:
        await collect(again, {"SEMANTIC": request["SEMANTIC"]}, sequence_id=stream_id)
    assert info.value.invalid
    await again.close()


async def test_vocoder_returns_exactly_960_samples_per_token(models: TritonModels) -> None:
    stream_id = new_stream_id()
    stream = models.open_stream("vocoder")
    rng = np.random.default_rng(7)
    chunks = [rng.integers(0, 6561, n).astype(np.int32) for n in (15, 15, 7)]
    samples = []
    for index, chunk in enumerate(chunks):
        for out in await collect(
            stream, {"TOKENS": chunk}, sequence_id=stream_id, start=index == 0, end=index == len(chunks) - 1
        ):
            assert int(out["SAMPLE_OFFSET"][0]) == sum(len(s) for s in samples)
            samples.append(out["AUDIO"])
    audio = np.concatenate(samples)
    assert len(audio) == 960 * sum(len(c) for c in chunks)
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0
    await stream.close()


async def test_encoder_over_triton_matches_the_local_module(models: TritonModels, smoke_weights) -> None:
    local = encoder_stage.load(smoke_weights / "encoder")
    rng = np.random.default_rng(3)
    pcm = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    expected = local.encode(pcm).numpy()
    stream_id = new_stream_id()
    pieces = []
    bounds = [0, 1234, 8000, 8001, 20000, len(pcm)]
    for index, (a, b) in enumerate(itertools.pairwise(bounds)):
        out = await models.infer(
            "encoder", {"AUDIO": pcm[a:b]}, sequence_id=stream_id, start=index == 0, end=b == len(pcm)
        )
        assert int(out["FRAME_OFFSET"][0]) == sum(len(p) for p in pieces)
        pieces.append(out["EMBEDDINGS"])
    got = np.concatenate(pieces)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)


async def test_duplex_returns_probabilities_per_frame(models: TritonModels) -> None:
    stream_id = new_stream_id()
    hidden = np.random.default_rng(5).standard_normal((4, LLM_DIM)).astype(np.float32)
    out = await models.infer(
        "duplex", {"HIDDEN": hidden, "SPEAKING": np.array([False])}, sequence_id=stream_id, start=True
    )
    assert out["PROBS"].shape == (4, 3)
    np.testing.assert_allclose(out["PROBS"].sum(axis=1), 1.0, atol=1e-5)
    await models.infer(
        "duplex",
        {"HIDDEN": np.zeros((0, LLM_DIM), np.float32), "SPEAKING": np.zeros(0, bool)},
        sequence_id=stream_id,
        end=True,
    )
