"""Bad tensors get INVALID_ARG with a message that says what is wrong, and the model keeps serving."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.stages.ids import new_stream_id
from orchestrator.triton.client import TritonModels
from orchestrator.triton.errors import TritonStageError
from tests.integration.helpers import collect

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LLM_DIM = 256
GOOD_AUDIO = (0.05 * np.sin(np.arange(3200) / 7)).astype(np.float32)


async def _encoder_still_serves(models: TritonModels) -> None:
    out = await models.infer("encoder", {"AUDIO": GOOD_AUDIO}, sequence_id=new_stream_id(), start=True, end=True)
    assert out["EMBEDDINGS"].shape[1] == LLM_DIM


@pytest.mark.parametrize(
    ("audio", "fragment"),
    [
        (np.zeros(0, np.float32), "AUDIO is empty"),
        (np.full(1600, np.nan, np.float32), "NaN"),
        (np.full(1600, 1000.0, np.float32), "divide int16 samples by 32768"),
        (np.zeros((2, 800), np.float32), "dimension"),
        (np.zeros(1600, np.int16), "data-type is 'INT16'"),
    ],
    ids=["empty", "nan", "int16-scale", "2d", "wrong-dtype"],
)
async def test_encoder_rejects_bad_audio_and_keeps_serving(
    models: TritonModels, audio: np.ndarray, fragment: str
) -> None:
    with pytest.raises(TritonStageError) as info:
        await models.infer("encoder", {"AUDIO": audio}, sequence_id=new_stream_id(), start=True)
    assert fragment.lower() in info.value.message.lower(), info.value.message
    assert info.value.status == "StatusCode.INVALID_ARGUMENT" and info.value.invalid
    await _encoder_still_serves(models)


async def test_a_bad_chunk_does_not_break_the_stream(models: TritonModels) -> None:
    stream_id = new_stream_id()
    first = await models.infer("encoder", {"AUDIO": GOOD_AUDIO}, sequence_id=stream_id, start=True)
    with pytest.raises(TritonStageError, match="NaN"):
        await models.infer("encoder", {"AUDIO": np.full(800, np.nan, np.float32)}, sequence_id=stream_id)
    last = await models.infer("encoder", {"AUDIO": GOOD_AUDIO}, sequence_id=stream_id, end=True)
    assert int(last["FRAME_OFFSET"][0]) == first["EMBEDDINGS"].shape[0]


async def test_unknown_stream_is_rejected(models: TritonModels) -> None:
    with pytest.raises(TritonStageError) as info:
        await models.infer("encoder", {"AUDIO": GOOD_AUDIO}, sequence_id=new_stream_id())
    assert "START" in info.value.message
    assert info.value.status == "StatusCode.INVALID_ARGUMENT"
    await _encoder_still_serves(models)


async def test_backbone_rejects_out_of_vocabulary_ids_and_ends_the_stream(models: TritonModels) -> None:
    stream = models.open_stream("backbone")
    with pytest.raises(TritonStageError, match=r"ids outside \[0, ") as info:
        await collect(stream, {"INPUT_IDS": np.array([1, 2, 10**6], np.int32)}, sequence_id=new_stream_id(), start=True)
    assert info.value.invalid
    fresh = models.open_stream("backbone")
    outputs = await collect(
        fresh, {"INPUT_IDS": np.array([1, 2, 3], np.int32)}, sequence_id=new_stream_id(), start=True, end=True
    )
    assert outputs[0]["HIDDEN"].shape == (3, LLM_DIM)
    await fresh.close()


async def test_backbone_rejects_speech_of_the_wrong_width(models: TritonModels) -> None:
    stream = models.open_stream("backbone")
    with pytest.raises(TritonStageError, match=f"must have {LLM_DIM} values"):
        await collect(
            stream,
            {"SPEECH_EMBEDDINGS": np.zeros((3, LLM_DIM + 1), np.float32)},
            sequence_id=new_stream_id(),
            start=True,
        )


async def test_duplex_rejects_nan_hidden_states(models: TritonModels) -> None:
    hidden = np.full((2, LLM_DIM), np.nan, np.float32)
    with pytest.raises(TritonStageError, match="NaN"):
        await models.infer(
            "duplex", {"HIDDEN": hidden, "SPEAKING": np.array([True])}, sequence_id=new_stream_id(), start=True
        )


async def test_speech_lm_start_requires_a_query(models: TritonModels) -> None:
    stream = models.open_stream("speech_lm")
    with pytest.raises(TritonStageError, match="must carry QUERY"):
        await collect(
            stream, {"SEMANTIC": np.zeros((5, 2 * LLM_DIM), np.float32)}, sequence_id=new_stream_id(), start=True
        )


async def test_vocoder_rejects_token_ids_out_of_range(models: TritonModels) -> None:
    stream = models.open_stream("vocoder")
    with pytest.raises(TritonStageError, match=r"outside \[0, 6561\)"):
        await collect(stream, {"TOKENS": np.array([1, 6561], np.int32)}, sequence_id=new_stream_id(), start=True)
