"""Streaming encoder == whole-utterance encoder, for any chunking of the PCM, and no look-ahead."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from services.encoder import SpeechEncoder, build_smoke, count_output_frames

SR = 16000
# Streaming and whole paths differ only in matmul shapes (float32 rounding); measured ~2e-6 against
# embeddings of standard deviation ~0.8.
ATOL = 1e-5


@pytest.fixture(scope="module")
def model() -> SpeechEncoder:
    return build_smoke(0)


def synthetic_speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A gliding harmonic tone with syllable-rate amplitude modulation, noise and a silent gap."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    pcm = 0.15 * voiced * envelope + 0.01 * rng.standard_normal(t.size)
    pcm[int(0.4 * t.size) : int(0.5 * t.size)] = 0.0
    return pcm.astype(np.float32)


def stream_in_random_pieces(model: SpeechEncoder, pcm: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Push pieces of 1 sample to 200 ms, sometimes empty; flush with an empty final push."""
    stream = model.new_stream()
    outs, pos = [], 0
    while pos < pcm.size:
        size = int(rng.choice([0, 1, int(rng.integers(2, 320)), int(rng.integers(320, 3201))]))
        out = stream.push(pcm[pos : pos + size])
        assert out.shape[1] == model.config.llm_dim
        outs.append(out)
        pos += size
    outs.append(stream.push(np.zeros(0, dtype=np.float32), final=True))
    assert stream.frames_emitted == sum(o.shape[0] for o in outs)
    return torch.cat(outs)


@pytest.mark.parametrize("seconds", [3.3, 2.0 + 7 / SR])
def test_streaming_matches_whole_for_random_chunkings(model: SpeechEncoder, seconds: float) -> None:
    pcm = synthetic_speechlike(seconds)
    whole = model.encode(pcm)
    assert whole.shape == (count_output_frames(pcm.size, model.config), model.config.llm_dim)
    rng = np.random.default_rng(42)
    for _ in range(4):
        streamed = stream_in_random_pieces(model, pcm, rng)
        assert streamed.shape == whole.shape
        torch.testing.assert_close(streamed, whole, atol=ATOL, rtol=0)


def test_fixed_size_pushes_and_final_with_samples(model: SpeechEncoder) -> None:
    pcm = synthetic_speechlike(2.5, seed=3)
    whole = model.encode(pcm)
    for piece_ms in (20, 60, 200, 240, 1000):
        piece = SR * piece_ms // 1000
        stream = model.new_stream()
        starts = list(range(0, pcm.size, piece))
        outs = [stream.push(pcm[s : s + piece], final=(s == starts[-1])) for s in starts]
        torch.testing.assert_close(torch.cat(outs), whole, atol=ATOL, rtol=0)


def test_a_chunk_is_emitted_as_soon_as_its_audio_arrived(model: SpeechEncoder) -> None:
    """Chunk k's last LFR frame reads fbank frames up to 24k+21, i.e. samples [0, 3840k + 3760)."""
    pcm = synthetic_speechlike(1.0)
    stream = model.new_stream()
    assert stream.push(pcm[:3759]).shape[0] == 0
    assert stream.push(pcm[3759:3760]).shape[0] == 2
    assert stream.push(pcm[3760 : 3840 + 3759]).shape[0] == 0
    assert stream.push(pcm[3840 + 3759 : 3840 + 3760]).shape[0] == 2
    assert stream.frames_emitted == 4


def test_no_lookahead_outputs_before_a_change_are_unchanged(model: SpeechEncoder) -> None:
    pcm_a = synthetic_speechlike(3.0)
    pcm_b = pcm_a.copy()
    change_at = 20_000
    pcm_b[change_at:] = synthetic_speechlike(3.0, seed=9)[change_at:]
    complete_chunks = (change_at - 3760) // 3840 + 1
    keep = complete_chunks * model.config.chunk_frames // model.config.projector_stride
    out_a, out_b = model.encode(pcm_a), model.encode(pcm_b)
    torch.testing.assert_close(out_a[:keep], out_b[:keep], atol=ATOL, rtol=0)
    assert (out_a[keep:] - out_b[keep:]).abs().max() > 1e-2


def test_empty_final_push_on_empty_stream_and_push_after_final(model: SpeechEncoder) -> None:
    stream = model.new_stream()
    assert stream.push(np.zeros(0, dtype=np.float32), final=True).shape == (0, model.config.llm_dim)
    with pytest.raises(RuntimeError, match="already finished"):
        stream.push(np.zeros(160, dtype=np.float32))


def _espeak_pcm(tmp_path: Path) -> np.ndarray:
    import soundfile
    import soxr

    wav = tmp_path / "sentence.wav"
    text = "The quick brown fox jumps over the lazy dog while the assistant keeps listening."
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True, timeout=60)
    audio, rate = soundfile.read(str(wav), dtype="float32")
    audio = soxr.resample(audio, rate, SR).astype(np.float32)
    return np.clip(audio / max(1e-6, float(np.abs(audio).max())) * 0.9, -1.0, 1.0)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_streaming_matches_whole_on_spoken_sentence(model: SpeechEncoder, tmp_path: Path) -> None:
    pcm = _espeak_pcm(tmp_path)
    assert pcm.size > 2 * SR
    whole = model.encode(pcm)
    assert whole.shape[0] == count_output_frames(pcm.size, model.config)
    rng = np.random.default_rng(7)
    for _ in range(3):
        torch.testing.assert_close(stream_in_random_pieces(model, pcm, rng), whole, atol=ATOL, rtol=0)
