"""Frontend of the encoder: LFR stacking as SenseVoice does it, frame-count rules, input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.encoder import EncoderConfig, SpeechEncoder, build_smoke, count_fbank_frames, count_output_frames
from services.encoder.frontend import FbankExtractor, LfrStacker

CONFIG = EncoderConfig.preset("smoke")


@pytest.fixture(scope="module")
def model() -> SpeechEncoder:
    return build_smoke(0)


def reference_lfr(feats: np.ndarray, m: int, n: int) -> np.ndarray:
    """SenseVoice's LFR written as its loop: left-pad (m-1)//2 copies of frame 0, pad the tail with the last."""
    t = feats.shape[0]
    padded = np.concatenate([np.repeat(feats[:1], (m - 1) // 2, axis=0), feats])
    rows = []
    for i in range(math.ceil(t / n)):
        window = list(padded[i * n : i * n + m])
        window += [feats[-1]] * (m - len(window))
        rows.append(np.concatenate(window))
    return np.stack(rows)


@pytest.mark.parametrize("frames", [1, 3, 4, 5, 6, 7, 10, 11, 12, 37])
def test_lfr_matches_reference_whole_and_incremental(frames: int) -> None:
    rng = np.random.default_rng(frames)
    feats = rng.standard_normal((frames, CONFIG.n_mels)).astype(np.float32)
    expected = reference_lfr(feats, CONFIG.lfr_m, CONFIG.lfr_n)
    np.testing.assert_array_equal(LfrStacker(CONFIG).push(feats, final=True), expected)
    stacker, outs, pos = LfrStacker(CONFIG), [], 0
    while pos < frames:
        step = int(rng.integers(0, 4))
        outs.append(stacker.push(feats[pos : pos + step], final=False))
        pos += step
    outs.append(stacker.push(feats[:0], final=True))
    np.testing.assert_array_equal(np.concatenate(outs), expected)


def test_lfr_emits_frame_once_its_last_source_frame_arrived() -> None:
    stacker = LfrStacker(CONFIG)
    feats = np.zeros((40, CONFIG.n_mels), dtype=np.float32)
    # LFR frame i needs fbank frames up to 6i + 3.
    assert stacker.push(feats[:3], final=False).shape[0] == 0
    assert stacker.push(feats[3:4], final=False).shape[0] == 1
    assert stacker.push(feats[4:9], final=False).shape[0] == 0
    assert stacker.push(feats[9:10], final=False).shape[0] == 1


def test_fbank_is_exact_under_any_split() -> None:
    pcm = (0.2 * np.random.default_rng(0).standard_normal(9000)).astype(np.float32)
    whole = FbankExtractor(CONFIG).accept(pcm)
    assert whole.shape == (count_fbank_frames(pcm.size, CONFIG), CONFIG.n_mels)
    extractor = FbankExtractor(CONFIG)
    pieces = [extractor.accept(pcm[s : s + 777]) for s in range(0, pcm.size, 777)]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


@pytest.mark.parametrize("samples", [1, 399, 400, 559, 560, 1360, 1361, 3760, 16000, 16001, 48123])
def test_output_frame_count_rule(model: SpeechEncoder, samples: int) -> None:
    pcm = np.full(samples, 0.01, dtype=np.float32)
    fbank = 0 if samples < 400 else 1 + (samples - 400) // 160
    expected = math.ceil(math.ceil(fbank / 6) / 2)
    assert count_fbank_frames(samples, CONFIG) == fbank
    assert count_output_frames(samples, CONFIG) == expected
    assert model.encode(pcm).shape == (expected, CONFIG.llm_dim)
    stream = model.new_stream()
    assert stream.push(pcm, final=True).shape == (expected, CONFIG.llm_dim)


def test_silence_gives_finite_embeddings(model: SpeechEncoder) -> None:
    out = model.encode(np.zeros(16000, dtype=np.float32))
    assert out.shape == (9, CONFIG.llm_dim)
    assert bool(out.isfinite().all())


@pytest.mark.parametrize(
    ("pcm", "message"),
    [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.zeros(1600, dtype=np.float64), "float32"),
        (np.zeros(1600, dtype=np.int16), "float32"),
        (np.zeros((2, 800), dtype=np.float32), "mono"),
        (np.array([0.0, np.nan] * 800, dtype=np.float32), "NaN or Inf"),
        (np.array([0.0, np.inf] * 800, dtype=np.float32), "NaN or Inf"),
        (np.full(1600, 1000.0, dtype=np.float32), r"\[-1, 1\]"),
        ([0.0] * 1600, "numpy array"),
    ],
)
def test_bad_pcm_is_rejected_with_a_clear_message(model: SpeechEncoder, pcm: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.encode(pcm)
    if message != "empty":
        with pytest.raises(ValueError, match=message):
            model.new_stream().push(pcm)


def test_wrong_sample_rate_is_rejected(model: SpeechEncoder) -> None:
    pcm = np.zeros(2205, dtype=np.float32)
    with pytest.raises(ValueError, match=r"16000 Hz.*22050 Hz"):
        model.encode(pcm, sample_rate=22050)
    with pytest.raises(ValueError, match=r"16000 Hz.*8000 Hz"):
        model.new_stream().push(pcm, sample_rate=8000)
    assert model.encode(pcm, sample_rate=16000).shape[0] == count_output_frames(pcm.size, CONFIG)
