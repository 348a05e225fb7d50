"""The stages' stream code puts every tensor it makes where the weights are.

A KIND_GPU instance moves its module to ``cuda:<device id>`` (``services.triton.device``); a stream
that then makes a tensor with no device (``torch.zeros(0, d)``) gets it on the CPU and fails on the
first op that mixes the two. No GPU here, so the tests make the default device ``meta`` while the
module stays on the CPU: every tensor made without naming a device lands on ``meta`` and either
fails such an op or cannot be read back, while a device-aware stream gives the same output as
without the context.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from services import duplex, encoder, speech_lm, vocoder
from services.duplex import batch as duplex_batch
from services.triton.device import instance_device


def _same_with_default_device_meta(run: Callable[[], np.ndarray]) -> None:
    expected = run()
    with torch.device("meta"):
        got = run()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_the_encoder_stream_makes_its_tensors_where_the_weights_are() -> None:
    model = encoder.build_smoke(0)
    pcm = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)

    def run() -> np.ndarray:
        stream = model.new_stream()
        first = stream.push(pcm[:7000])
        rest = stream.push(pcm[7000:], final=True)
        return torch.cat([first, rest]).numpy()

    _same_with_default_device_meta(run)


def test_the_duplex_stream_makes_its_tensors_where_the_weights_are() -> None:
    model = duplex.build_smoke(0)
    hidden = torch.from_numpy(np.random.default_rng(1).standard_normal((6, model.config.llm_dim)).astype(np.float32))
    speaking = torch.tensor([True, False, True, True])

    def run() -> np.ndarray:
        stream = model.new_stream()
        probs = [stream.push(hidden[:2], False), stream.push(hidden[2:], speaking)]
        return torch.cat(probs).numpy()

    _same_with_default_device_meta(run)


def test_the_encoder_batch_makes_its_tensors_where_the_weights_are() -> None:
    model = encoder.build_smoke(0)
    rng = np.random.default_rng(5)
    pcms = [(0.1 * rng.standard_normal(16000)).astype(np.float32) for _ in range(3)]

    def run() -> np.ndarray:
        streams = [model.new_stream() for _ in pcms]
        # Equal work (reshapes), then unequal work, an empty one and odd final flushes (index ops).
        outs = encoder.encode_batch(model, [s.prepare(p[:3760]) for s, p in zip(streams, pcms, strict=True)])
        sizes = (3840, 7680 + 3000, 100)
        work = [s.prepare(p[3760 : 3760 + n], final=n != 100) for s, p, n in zip(streams, pcms, sizes, strict=True)]
        outs += encoder.encode_batch(model, work)
        return torch.cat(outs).numpy()

    _same_with_default_device_meta(run)


def test_the_duplex_batch_makes_its_tensors_where_the_weights_are() -> None:
    model = duplex.build_smoke(0)
    hidden = torch.from_numpy(
        np.random.default_rng(6).standard_normal((3, 20, model.config.llm_dim)).astype(np.float32)
    )
    speaking = torch.ones(18, dtype=torch.bool)

    def run() -> np.ndarray:
        streams = [model.new_stream() for _ in range(3)]
        # Equal work (reshapes), then unequal work and an empty one (index ops).
        probs = duplex_batch.score_batch(model, [s.prepare(hidden[i, :2], False) for i, s in enumerate(streams)])
        work = [
            streams[0].prepare(hidden[0, 2:3], True),
            streams[1].prepare(hidden[1, 2:20], speaking),
            streams[2].prepare(hidden[2, :0], False),
        ]
        probs += duplex_batch.score_batch(model, work)
        return torch.cat(probs).numpy()

    _same_with_default_device_meta(run)


def test_the_speech_lm_stream_makes_its_tensors_where_the_weights_are() -> None:
    model = speech_lm.build_smoke(0)
    width = 2 * model.config.llm_hidden_size
    rng = np.random.default_rng(2)
    query = torch.from_numpy(rng.standard_normal(width).astype(np.float32))
    semantic = torch.from_numpy(rng.standard_normal((5, width)).astype(np.float32))

    def run() -> np.ndarray:
        stream = model.new_stream(query, seed=3)
        stream.push_semantic(semantic)
        return np.array(list(stream.generate(12, until_eos=False, temperature=1.0, top_k=20, seed=3)))

    _same_with_default_device_meta(run)


def test_the_vocoder_stream_makes_its_tensors_where_the_weights_are() -> None:
    model = vocoder.build_smoke(0)
    tokens = np.random.default_rng(4).integers(0, model.config.speech_token_size, 30).astype(np.int64)

    def run() -> np.ndarray:
        stream = model.new_stream()
        return np.concatenate([stream.push(tokens[:15]), stream.push(tokens[15:], final=True)])

    _same_with_default_device_meta(run)


def test_the_vocoder_batch_makes_its_tensors_where_the_weights_are() -> None:
    model = vocoder.build_smoke(0)
    rng = np.random.default_rng(5)
    ids = [rng.integers(0, model.config.speech_token_size, n).astype(np.int64) for n in (34, 22, 9)]

    def run() -> np.ndarray:
        streams = [model.new_stream() for _ in ids]
        streams[0].push(ids[0][:15])
        # different ages, leads, pass lengths and HiFT windows in one batch, then all final
        cuts = [(15, 30), (0, 15), (0, 4)]
        first = vocoder.push_batch(model, [s.prepare(x[a:b]) for s, x, (a, b) in zip(streams, ids, cuts, strict=True)])
        rest = [s.prepare(x[b:], final=True) for s, x, (_, b) in zip(streams, ids, cuts, strict=True)]
        return np.concatenate([*first, *vocoder.push_batch(model, rest)])

    _same_with_default_device_meta(run)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"model_instance_kind": "GPU", "model_instance_device_id": "1"}, torch.device("cuda", 1)),
        ({"model_instance_kind": "CPU", "model_instance_device_id": "0"}, torch.device("cpu")),
        ({}, torch.device("cpu")),
    ],
)
def test_a_kind_gpu_instance_computes_on_its_own_gpu(args: dict[str, str], expected: torch.device) -> None:
    assert instance_device(args) == expected
