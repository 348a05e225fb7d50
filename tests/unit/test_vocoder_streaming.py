"""VocoderStream: exact sample counts, latency, agreement with whole synthesis, smooth joins, bounds.

Bounds guaranteed for the smoke preset (chunk_size 1, hift_right_frames 2, 480-sample cross-fade),
measured worst cases over 3 seeds x 3 utterances x 6 chunkings in brackets:
- the streamed mel equals the whole-utterance mel to 1e-4 (float rounding only);
- audio: max |stream - whole| <= 0.05 [0.019] and RMS error <= 1.5 % of the RMS [0.6 %];
- a join's sample-to-sample jump is <= the 99.9th percentile of jumps inside chunks [0.72 x], and
  differs from the whole-utterance jump at the same sample by <= 0.01 [0.0032].
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from services.common.seeding import seeded
from services.vocoder import SAMPLES_PER_TOKEN, Token2Wav, VocoderStream, build_smoke
from services.vocoder.smoke import smoke_token2wav

HOLD_BACK = 3840  # samples: 3 lookahead tokens (6 frames) + 2 frames of HiFT right context
CHUNKINGS = {
    "1": [1],
    "2": [2],
    "7": [7],
    "15": [15],
    "16": [16],
    "mixed": [3, 15, 1, 16, 0, 7, 15],
    "small-first": [5, 15],
}


@pytest.fixture(scope="module")
def model() -> Token2Wav:
    return build_smoke(0)


def tokens(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, 6561, n).tolist()


def pieces(n: int, pattern: list[int]) -> list[tuple[int, int]]:
    """Cut ``[0, n)`` by repeating ``pattern`` (the last piece may be shorter)."""
    cuts, start, i = [], 0, 0
    while start < n:
        size = pattern[i % len(pattern)]
        cuts.append((start, min(n, start + size)))
        start, i = start + size, i + 1
    return cuts


def stream_out(
    model: Token2Wav, ids: list[int], pattern: list[int], speaker: torch.Tensor | None = None
) -> tuple[list[np.ndarray], VocoderStream]:
    stream = model.new_stream(speaker)
    cuts = pieces(len(ids), pattern)
    outs = [stream.push(ids[a:b], final=k == len(cuts) - 1) for k, (a, b) in enumerate(cuts)]
    return outs, stream


@pytest.mark.parametrize("name", list(CHUNKINGS))
def test_exact_sample_counts_and_hold_back(model: Token2Wav, name: str) -> None:
    ids = tokens(37)
    stream = model.new_stream()
    cuts = pieces(len(ids), CHUNKINGS[name])
    total = 0
    for k, (a, b) in enumerate(cuts):
        final = k == len(cuts) - 1
        out = stream.push(ids[a:b], final=final)
        assert out.dtype == np.float32 and out.ndim == 1 and len(out) % 480 == 0
        total += len(out)
        assert stream.tokens_received == b and stream.samples_emitted == total
        if not final:  # everything but the hold-back is out as soon as it is stable
            assert total == max(0, SAMPLES_PER_TOKEN * b - HOLD_BACK)
    assert total == SAMPLES_PER_TOKEN * len(ids)


def test_random_chunkings_with_empty_pushes_add_up_exactly(model: Token2Wav) -> None:
    rng = np.random.default_rng(3)
    for _ in range(4):
        n = int(rng.integers(1, 40))
        ids = tokens(n, seed=n)
        stream, total, start = model.new_stream(), 0, 0
        while start < n:
            size = int(rng.integers(0, 12))
            total += len(stream.push(ids[start : start + size]))
            start += size
        total += len(stream.push([], final=True))
        assert total == SAMPLES_PER_TOKEN * n


def test_degenerate_streams(model: Token2Wav) -> None:
    assert len(model.new_stream().push([], final=True)) == 0
    single = model.new_stream()
    assert len(single.push([42])) == 0
    assert len(single.push([], final=True)) == SAMPLES_PER_TOKEN
    whole = model.new_stream().push(tokens(20), final=True)
    np.testing.assert_allclose(whole, model.synthesize(tokens(20)), atol=1e-5)


def test_first_push_of_15_returns_all_but_the_hold_back(model: Token2Wav) -> None:
    assert model.config.hold_back_samples == HOLD_BACK
    out = model.new_stream().push(tokens(15))
    assert len(out) == 15 * SAMPLES_PER_TOKEN - HOLD_BACK == 10560  # 73 %, 160 ms held back


def test_streamed_mel_equals_whole_mel(model: Token2Wav) -> None:
    ids = torch.tensor(tokens(64))  # longer than the 24-token attention window: caches get trimmed
    spks = model.speaker_condition(None)
    with torch.inference_mode():
        whole = model.flow(ids, spks)
        for pattern in ([1], [7], [15, 16]):
            state, mel = model.flow.new_state(), torch.zeros(80, 0)
            cuts = pieces(len(ids), pattern)
            for k, (a, b) in enumerate(cuts):
                part, first = model.flow.advance(state, ids[a:b], spks, final=k == len(cuts) - 1)
                mel = torch.cat([mel[:, :first], part], dim=1)
            assert mel.shape == whole.shape
            assert float((mel - whole).abs().max()) < 1e-4


@pytest.mark.parametrize("name", list(CHUNKINGS))
def test_streaming_is_close_to_whole_and_joins_are_smooth(model: Token2Wav, name: str) -> None:
    for seed, n in ((1, 64), (2, 45)):
        ids = tokens(n, seed)
        whole = model.synthesize(ids)
        outs, _ = stream_out(model, ids, CHUNKINGS[name])
        audio = np.concatenate(outs)
        error = audio - whole
        assert np.abs(error).max() <= 0.05
        assert np.sqrt(np.mean(error**2)) <= 0.015 * np.sqrt(np.mean(whole**2))
        joins = [j for j in np.cumsum([len(o) for o in outs])[:-1] if 0 < j < len(audio)]
        jumps = np.abs(np.diff(audio))
        inside = np.ones(len(jumps), dtype=bool)
        inside[[j - 1 for j in joins]] = False
        typical = np.percentile(jumps[inside], 99.9)
        for j in joins:
            jump = abs(audio[j] - audio[j - 1])
            assert jump <= typical
            assert abs(jump - abs(whole[j] - whole[j - 1])) <= 0.01


def test_stream_is_deterministic_and_uses_the_speaker(model: Token2Wav) -> None:
    ids = tokens(40)
    speaker = torch.randn(192, generator=torch.Generator().manual_seed(9))
    first, _ = stream_out(model, ids, [7], speaker)
    second, _ = stream_out(model, ids, [7], speaker)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    whole = model.synthesize(ids, speaker)
    assert np.abs(np.concatenate(first) - whole).max() <= 0.05
    assert np.abs(whole - model.synthesize(ids)).max() > 0.05


def test_per_stream_memory_stays_bounded(model: Token2Wav) -> None:
    ids = tokens(150)
    stream = model.new_stream()
    sizes = []
    for start in range(0, 150, 5):
        stream.push(ids[start : start + 5])
        sizes.append(stream.cache_bytes)
    # the 24-token attention window is full after ~30 tokens; from then on the caches stop growing
    assert max(sizes[6:]) == sizes[-1] < 500_000  # about 0.4 MB per smoke stream
    stream.push([], final=True)


def test_push_after_final_and_bad_push_leave_clear_errors(model: Token2Wav) -> None:
    ids = tokens(30)
    expected, _ = stream_out(model, ids, [10])
    stream = model.new_stream()
    got = [stream.push(ids[:10])]
    with pytest.raises(ValueError, match="outside"):
        stream.push([1, 99999])
    got += [stream.push(ids[10:20]), stream.push(ids[20:], final=True)]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    with pytest.raises(ValueError, match="final=True"):
        stream.push([1])


def test_partial_chunks_stay_exact_in_length_and_close() -> None:
    """chunk_size 5: pushes that end inside a chunk commit mel computed from the partial chunk."""
    base = build_smoke(0).config
    config = dataclasses.replace(base, flow=dataclasses.replace(base.flow, chunk_size=5, left_chunks=5))
    with seeded(0):
        chunky = smoke_token2wav(config).eval()
    ids = tokens(53, seed=4)
    whole = chunky.synthesize(ids)
    for pattern in ([1], [7], [15], [5]):
        outs, stream = stream_out(chunky, ids, pattern)
        audio = np.concatenate(outs)
        assert len(audio) == stream.samples_emitted == SAMPLES_PER_TOKEN * len(ids)
        assert np.sqrt(np.mean((audio - whole) ** 2)) <= 0.1 * np.sqrt(np.mean(whole**2))
