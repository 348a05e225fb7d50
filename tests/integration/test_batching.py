"""Cross-session batching on the real Triton: streams served together get exactly what they get alone.

Each test runs some streams one after another (nothing to batch with) and then the same streams at
once, and asserts that every stream's outputs are the same (1e-5; token ids exactly, sampled with a
per-stream seed or greedy), that the model really served several streams per step (its
``minmo_batch_size`` histogram on Triton's /metrics), and that a stream joining late, another
stream's STOP, END or error leave the others' outputs unchanged.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from orchestrator.devstack.triton_launcher import TritonProcess
from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.client import TritonModels
from orchestrator.triton.errors import TritonStageError
from tests.integration.helpers import collect

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WIDTH = 256  # the smoke backbone's hidden size
RNG = np.random.default_rng(11)


def batch_histogram(triton: TritonProcess, model: str) -> tuple[float, float]:
    """(kernel calls, streams served) of a model, from ``minmo_batch_size`` on Triton's /metrics."""
    with urllib.request.urlopen(triton.metrics_url, timeout=5) as response:
        text = response.read().decode()

    def sample(suffix: str) -> float:
        match = re.search(rf'^minmo_batch_size_{suffix}\{{model="{model}"\}} (\S+)$', text, re.MULTILINE)
        assert match is not None, f"no minmo_batch_size_{suffix} for {model} on /metrics"
        return float(match.group(1))

    return sample("count"), sample("sum")


async def alone_then_together(
    triton: TritonProcess, model: str, runs: list[Callable[[], Awaitable[Any]]]
) -> tuple[list[Any], list[Any], float]:
    """Results of ``runs`` one at a time, then all at once, and the mean batch size of the concurrent part."""
    alone = [await run() for run in runs]
    calls, served = batch_histogram(triton, model)
    together = await asyncio.gather(*(run() for run in runs))
    calls_after, served_after = batch_histogram(triton, model)
    return alone, list(together), (served_after - served) / max(1.0, calls_after - calls)


def assert_same(alone: Any, together: Any) -> None:
    if isinstance(alone, dict):
        assert alone.keys() == together.keys()
        for key in alone:
            assert_same(alone[key], together[key])
    elif isinstance(alone, list | tuple):
        assert len(alone) == len(together)
        for a, b in zip(alone, together, strict=True):
            assert_same(a, b)
    elif isinstance(alone, np.ndarray) and alone.dtype.kind == "f":
        np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)  # float32 rounding grows with |x|
    else:
        np.testing.assert_array_equal(np.asarray(together), np.asarray(alone))


async def generate(
    models: TritonModels, prompt: np.ndarray, tokens: int, seed: int, *, speech: np.ndarray | None = None
) -> dict[str, Any]:
    """A fresh backbone session: prompt (+ speech), then ``tokens`` sampled tokens; its outputs."""
    stream, session = models.open_stream("backbone"), new_stream_id()
    request = {
        "INPUT_IDS": prompt,
        "MAX_NEW_TOKENS": np.array([tokens], np.int32),
        "TEMPERATURE": np.array([1.0], np.float32),
        "TOP_K": np.array([40], np.int32),
        "RANDOM_SEED": np.array([seed], np.uint64),
    }
    if speech is not None:
        request["SPEECH_EMBEDDINGS"] = speech
    prefill, *steps = await collect(stream, request, sequence_id=session, start=True)
    await collect(stream, {"INPUT_IDS": np.zeros(0, np.int32)}, sequence_id=session, end=True)
    await stream.close()
    return {
        "prefill": prefill["HIDDEN"],
        "ids": [int(step["TOKEN_IDS"][0]) for step in steps],
        "hidden": [step["HIDDEN"] for step in steps],
        "embeddings": [step["EMBEDDINGS"] for step in steps],
    }


def prompts() -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Ragged contexts: different prompt lengths, some with speech rows."""
    lengths = [(5, 0), (40, 0), (12, 7), (3, 30)]
    return [
        (
            RNG.integers(10, 250, size=n).astype(np.int32),
            RNG.standard_normal((rows, WIDTH)).astype(np.float32) * 0.5 if rows else None,
        )
        for n, rows in lengths
    ]


async def test_backbone_sessions_generated_together_equal_each_generated_alone(
    triton: TritonProcess, models: TritonModels
) -> None:
    cases = prompts()
    runs = [lambda p=p, s=s, i=i: generate(models, p, 24, seed=100 + i, speech=s) for i, (p, s) in enumerate(cases)]
    alone, together, mean_batch = await alone_then_together(triton, "backbone", runs)
    assert_same(alone, together)
    assert all(len(result["ids"]) > 0 for result in alone)
    assert len({tuple(result["ids"]) for result in alone}) == len(alone)  # distinct streams, distinct outputs
    assert mean_batch > 1.5, f"the backbone served {mean_batch:.2f} streams per step"


async def test_a_late_joiner_another_streams_stop_and_a_failing_request_leave_the_others_unchanged(
    models: TritonModels,
) -> None:
    cases = prompts()
    steady = [lambda p=p, i=i: generate(models, p, 30, seed=7 + i) for i, (p, _) in enumerate(cases[:3])]
    alone = [await run() for run in steady]

    async def stopped_after(tokens: int) -> None:
        stream, session = models.open_stream("backbone"), new_stream_id()
        request = {"INPUT_IDS": cases[3][0], "MAX_NEW_TOKENS": np.array([500], np.int32)}
        seen = 0
        async for out in stream.request(request, sequence_id=session, start=True):
            seen += int(out["TOKEN_IDS"].size)
            if seen == tokens:
                stream.cancel()  # a STOP for this request, sent while the others generate
                break
        await asyncio.wait_for(stream.wait_ended(), 10)
        closer = models.open_stream("backbone")
        await collect(closer, {"INPUT_IDS": np.zeros(0, np.int32)}, sequence_id=session, end=True)
        await closer.close()

    async def failing() -> None:
        stream = models.open_stream("backbone")
        with pytest.raises(TritonStageError, match="max_position_embeddings"):
            too_many = {"INPUT_IDS": cases[0][0], "MAX_NEW_TOKENS": np.array([2048], np.int32)}
            request = {**too_many, "SUFFIX_IDS": np.ones(3000, np.int32)}
            await collect(stream, request, sequence_id=new_stream_id(), start=True, end=True)
        await stream.close()

    async def late(delay: float) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return await steady[2]()

    together = await asyncio.gather(steady[0](), steady[1](), late(0.05), stopped_after(3), failing())
    assert_same(alone, list(together[:3]))


async def test_speech_lm_streams_together_equal_each_alone(triton: TritonProcess, models: TritonModels) -> None:
    width = 2 * WIDTH

    async def speak(seed: int, groups: int) -> list[list[int]]:
        rng = np.random.default_rng(seed)
        stream, session = models.open_stream("speech_lm"), new_stream_id()
        tokens = []
        for group in range(groups):
            request = {
                "SEMANTIC": rng.standard_normal((5, width)).astype(np.float32),
                "TEMPERATURE": np.array([1.0], np.float32),
                "RANDOM_SEED": np.array([seed], np.uint64),
            }
            if group == 0:
                request["QUERY"] = rng.standard_normal(width).astype(np.float32)
            last = group == groups - 1
            if last:
                request["UNTIL_EOS"] = np.array([True])
                request["MAX_TOKENS"] = np.array([40], np.int32)
            outs = await collect(stream, request, sequence_id=session, start=group == 0, end=last)
            tokens.append([int(t) for out in outs for t in out["SPEECH_TOKENS"]])
        await stream.close()
        return tokens

    runs = [lambda s=s, g=g: speak(s, g) for s, g in ((1, 3), (2, 2), (3, 4), (4, 1))]
    alone, together, mean_batch = await alone_then_together(triton, "speech_lm", runs)
    assert_same(alone, together)
    assert all(len(groups[0]) == 15 for groups in alone if len(groups) > 1)
    assert mean_batch > 1.5, f"the speech LM served {mean_batch:.2f} streams per step"


async def test_vocoder_streams_together_equal_each_alone(triton: TritonProcess, models: TritonModels) -> None:
    async def synthesize(seed: int, pushes: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        stream, session = models.open_stream("vocoder"), new_stream_id()
        audio = []
        for push in range(pushes):
            last = push == pushes - 1
            tokens = rng.integers(0, 6561, size=15 if not last else 7).astype(np.int32)
            outs = await collect(stream, {"TOKENS": tokens}, sequence_id=session, start=push == 0, end=last)
            audio.extend(out["AUDIO"] for out in outs)
        await stream.close()
        return audio

    runs = [lambda s=s, p=p: synthesize(s, p) for s, p in ((1, 3), (2, 2), (3, 4), (4, 1), (5, 3))]
    alone, together, mean_batch = await alone_then_together(triton, "vocoder", runs)
    assert_same(alone, together)
    for result, pushes in zip(alone, (3, 2, 4, 1, 3), strict=True):
        assert sum(a.size for a in result) == 960 * (15 * (pushes - 1) + 7)
    assert mean_batch > 1.2, f"the vocoder served {mean_batch:.2f} streams per step"


async def test_encoder_and_duplex_streams_together_equal_each_alone(
    triton: TritonProcess, models: TritonModels
) -> None:
    async def listen(seed: int, seconds: float) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        pcm = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
        encoder_id, duplex_id = new_stream_id(), new_stream_id()
        embeddings, probs = [], []
        pieces = list(range(0, pcm.size, 3840))
        for i, offset in enumerate(pieces):
            last = i == len(pieces) - 1
            encoded = await models.infer(
                "encoder", {"AUDIO": pcm[offset : offset + 3840]}, sequence_id=encoder_id, start=i == 0, end=last
            )
            embeddings.append(encoded["EMBEDDINGS"])
            if encoded["EMBEDDINGS"].shape[0]:
                hidden = encoded["EMBEDDINGS"][:, :WIDTH]
                decided = await models.infer(
                    "duplex",
                    {"HIDDEN": hidden, "SPEAKING": np.array([i % 2 == 0])},
                    sequence_id=duplex_id,
                    start=not probs,
                )
                probs.append(decided["PROBS"])
        await models.infer(
            "duplex",
            {"HIDDEN": np.zeros((0, WIDTH), np.float32), "SPEAKING": np.zeros(0, bool)},
            sequence_id=duplex_id,
            end=True,
        )
        return {"embeddings": embeddings, "probs": probs}

    runs = [lambda s=s, d=d: listen(s, d) for s, d in ((1, 2.0), (2, 3.1), (3, 1.3), (4, 2.6), (5, 0.9), (6, 2.2))]
    calls, served = batch_histogram(triton, "duplex")
    alone, together, mean_encoder_batch = await alone_then_together(triton, "encoder", runs)
    assert_same(alone, together)
    assert mean_encoder_batch > 1.2, f"the encoder served {mean_encoder_batch:.2f} streams per call"
    calls_after, served_after = batch_histogram(triton, "duplex")
    assert served_after - served > calls_after - calls  # some duplex calls served several streams


async def test_a_stream_flooded_with_requests_is_refused_beyond_its_queue_bound(models: TritonModels) -> None:
    """Requests of one stream wait their turn in the model; more than 16 waiting are refused at once."""
    session = new_stream_id()
    first = models.open_stream("backbone")
    long_run = first.request(
        {"INPUT_IDS": np.arange(10, 20, dtype=np.int32), "MAX_NEW_TOKENS": np.array([2000], np.int32)},
        sequence_id=session,
        start=True,
    )
    await anext(long_run)  # the prefill: the session exists and is generating

    async def one_more() -> str:
        stream = models.open_stream("backbone")
        try:
            await collect(stream, {"MAX_NEW_TOKENS": np.array([1], np.int32)}, sequence_id=session)
            return "served"
        except TritonStageError as exc:
            return exc.message
        finally:
            await stream.close()

    flood = [asyncio.create_task(one_more()) for _ in range(24)]
    await asyncio.sleep(1.0)
    first.cancel()  # STOP the long generation: the queued requests then run one by one
    outcomes = await asyncio.wait_for(asyncio.gather(*flood), 60)
    refused = [o for o in outcomes if "requests waiting" in o]
    assert len(refused) >= 24 - 15, outcomes  # the running request and 15 waiting fill the bound of 16
    assert outcomes.count("served") == 24 - len(refused)
    closer = models.open_stream("backbone")
    await collect(closer, {"INPUT_IDS": np.zeros(0, np.int32)}, sequence_id=session, end=True)
    await closer.close()
