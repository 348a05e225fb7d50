"""Request parsing shared by the Triton adapters, without Triton: the messages users will read."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from services.triton.contracts import BackboneRequest, DuplexRequest, EncoderRequest, VocoderRequest
from services.triton.ordered_executor import OrderedExecutor
from services.triton.params import ModelParameters, ParameterError
from services.triton.tensors import InvalidInputError


def getter(**tensors: np.ndarray):
    batched = {name: value[None] for name, value in tensors.items()}
    return batched.get


def test_encoder_accepts_float_pcm_and_allows_an_empty_end_request() -> None:
    assert EncoderRequest.parse(getter(AUDIO=np.zeros(10, np.float32)), end=False).audio.shape == (10,)
    assert EncoderRequest.parse(getter(AUDIO=np.zeros(0, np.float32)), end=True).audio.shape == (0,)
    with pytest.raises(InvalidInputError, match="AUDIO is empty"):
        EncoderRequest.parse(getter(AUDIO=np.zeros(0, np.float32)), end=False)
    with pytest.raises(InvalidInputError, match="AUDIO is required"):
        EncoderRequest.parse(getter(), end=False)


def test_duplex_broadcasts_one_speaking_flag_and_checks_width() -> None:
    parsed = DuplexRequest.parse(
        getter(HIDDEN=np.zeros((3, 8), np.float32), SPEAKING=np.array([True])), width=8, end=False
    )
    assert parsed.speaking.tolist() == [True, True, True]
    with pytest.raises(InvalidInputError, match="must have 8 values"):
        DuplexRequest.parse(getter(HIDDEN=np.zeros((3, 9), np.float32), SPEAKING=np.array([True])), width=8, end=False)
    with pytest.raises(InvalidInputError, match="1 or 3 values"):
        DuplexRequest.parse(
            getter(HIDDEN=np.zeros((3, 8), np.float32), SPEAKING=np.array([True, False])), width=8, end=False
        )


def test_backbone_request_defaults_and_limits() -> None:
    parsed = BackboneRequest.parse(
        getter(INPUT_IDS=np.array([1, 2], np.int32)), vocab_size=10, width=4, max_new_tokens_limit=8
    )
    assert parsed.input_ids == [1, 2] and parsed.max_new_tokens == 0 and parsed.truncate_to == -1
    assert parsed.sampling.temperature == 0.0 and parsed.speech is None
    with pytest.raises(InvalidInputError, match=r"MAX_NEW_TOKENS must be in \[0, 8\]"):
        BackboneRequest.parse(
            getter(MAX_NEW_TOKENS=np.array([9], np.int32)), vocab_size=10, width=4, max_new_tokens_limit=8
        )
    with pytest.raises(InvalidInputError, match="TOP_P"):
        BackboneRequest.parse(getter(TOP_P=np.array([0.0], np.float32)), vocab_size=10, width=4, max_new_tokens_limit=8)


def test_vocoder_request_checks_token_range_and_speaker_size() -> None:
    with pytest.raises(InvalidInputError, match=r"outside \[0, 6561\)"):
        VocoderRequest.parse(getter(TOKENS=np.array([-1], np.int32)), token_count=6561, speaker_dim=192, end=False)
    with pytest.raises(InvalidInputError, match="SPEAKER must have 192 values"):
        VocoderRequest.parse(
            getter(TOKENS=np.array([1], np.int32), SPEAKER=np.zeros(5, np.float32)),
            token_count=6561,
            speaker_dim=192,
            end=False,
        )


def test_parameters_treat_unfilled_placeholders_as_unset(tmp_path, monkeypatch) -> None:
    config = {
        "name": "encoder",
        "parameters": {"weights_dir": {"string_value": "${weights_dir}"}, "n": {"string_value": "x"}},
    }
    params = ModelParameters.from_args({"model_config": json.dumps(config)})
    monkeypatch.delenv("MINMO_WEIGHTS_DIR", raising=False)
    with pytest.raises(ParameterError, match="MINMO_WEIGHTS_DIR"):
        params.weights_dir("encoder")
    (tmp_path / "encoder").mkdir()
    monkeypatch.setenv("MINMO_WEIGHTS_DIR", str(tmp_path))
    assert params.weights_dir("encoder") == tmp_path / "encoder"
    with pytest.raises(ParameterError, match="not an integer"):
        params.get_int("n")
    assert params.get_int("absent", 3) == 3


def test_ordered_executor_keeps_each_stream_in_order_while_streams_overlap() -> None:
    executor = OrderedExecutor(workers=2, name="test")
    seen: dict[str, list[int]] = {"a": [], "b": []}
    running = {"a": 0, "b": 0}
    overlap = threading.Event()
    lock = threading.Lock()

    def job(key: str, index: int) -> None:
        with lock:
            running[key] += 1
            assert running[key] == 1, "two jobs of one stream ran at once"
            if running["a"] and running["b"]:
                overlap.set()
        time.sleep(0.01)
        with lock:
            seen[key].append(index)
            running[key] -= 1

    for index in range(10):
        for key in ("a", "b"):
            executor.submit(key, lambda k=key, i=index: job(k, i))
    executor.shutdown()
    assert seen == {"a": list(range(10)), "b": list(range(10))}
    assert overlap.is_set()
