"""Client audio decoding (any supported format -> 16 kHz float32), output encoding, voice prompts."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from orchestrator.audio import AudioFormatError, InputAudioDecoder, encode_pcm16_24k
from orchestrator.tasks.voice import SPEAKER_DIM, decode_voice_prompt, smoke_speaker_embedding


def _pcm16(samples: np.ndarray) -> bytes:
    return np.round(np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def _tone(rate: int, seconds: float, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _decode_split(decoder: InputAudioDecoder, data: bytes, sizes: list[int]) -> np.ndarray:
    pieces, offset = [], 0
    for size in sizes:
        if offset >= len(data):
            break
        pieces.append(decoder.decode(data[offset : offset + size]))
        offset += size
    assert offset >= len(data)
    pieces.append(decoder.flush())
    return np.concatenate(pieces)


def _random_splits(total_bytes: int, max_bytes: int, width: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes, covered = [], 0
    while covered < total_bytes:
        size = int(rng.integers(1, max_bytes // width + 1)) * width
        sizes.append(size)
        covered += size
    return sizes


@pytest.mark.parametrize(
    ("encoding", "data", "fragment"),
    [
        ("pcm16", b"\x00\x01\x02", "not a multiple of 2"),
        ("float32", b"\x00" * 6, "not a multiple of 4"),
        ("float32", np.array([0.0, np.nan], "<f4").tobytes(), "NaN or Inf (first at sample 1)"),
        ("float32", np.array([np.inf, 0.0], "<f4").tobytes(), "NaN or Inf"),
        ("float32", np.array([0.5, -1.25], "<f4").tobytes(), "outside [-1, 1] (peak 1.25)"),
        ("pcm16", b"", "empty"),
        ("float32", b"", "empty"),
        ("pcm16", b"\x00\x00" * 16_001, "at most 1 s (16000 samples)"),
    ],
    ids=["odd-pcm16", "float32-not-4", "nan", "inf", "out-of-range", "empty-pcm16", "empty-float32", "over-1s"],
)
def test_bad_chunks_are_rejected_with_what_to_fix(encoding: str, data: bytes, fragment: str) -> None:
    decoder = InputAudioDecoder(encoding, 16_000)
    with pytest.raises(AudioFormatError) as info:
        decoder.decode(data)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_the_one_second_bound_counts_samples_at_the_client_rate() -> None:
    decoder = InputAudioDecoder("float32", 8_000)
    decoder.decode(np.zeros(8_000, "<f4").tobytes())
    with pytest.raises(AudioFormatError, match=r"8001 samples \(1.00 s at 8000 Hz\)"):
        decoder.decode(np.zeros(8_001, "<f4").tobytes())


@pytest.mark.parametrize("rate", [7_999, 48_001, 96_000, -16_000])
def test_unsupported_rates_are_rejected(rate: int) -> None:
    with pytest.raises(AudioFormatError, match="use 8000 to 48000 Hz"):
        InputAudioDecoder("pcm16", rate)


def test_unsupported_encoding_is_rejected() -> None:
    with pytest.raises(AudioFormatError, match="use PCM16 or FLOAT32"):
        InputAudioDecoder("mulaw", 16_000)


@pytest.mark.parametrize("encoding", ["", "ENCODING_UNSPECIFIED", "PCM16", "pcm16"])
def test_proto_defaults_mean_pcm16_at_16khz(encoding: str) -> None:
    decoder = InputAudioDecoder(encoding, 0)
    assert (decoder.encoding, decoder.sample_rate_hz) == ("pcm16", 16_000)


def test_pcm16_at_16khz_passes_through_exactly() -> None:
    ints = np.array([0, 1, -1, 32767, -32768, 1234], "<i2")
    decoded = InputAudioDecoder("pcm16", 16_000).decode(ints.tobytes())
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, ints.astype(np.float32) / 32768)
    assert decoded.min() == -1.0


def test_float32_at_16khz_passes_through_exactly() -> None:
    samples = np.array([0.0, 1.0, -1.0, 0.25], np.float32)
    decoder = InputAudioDecoder("FLOAT32", 16_000)
    np.testing.assert_array_equal(decoder.decode(samples.astype("<f4").tobytes()), samples)
    assert decoder.flush().size == 0


@pytest.mark.parametrize("rate", [8_000, 44_100, 48_000])
@pytest.mark.parametrize("seed", range(6))
def test_resampling_to_16khz_is_independent_of_chunking(rate: int, seed: int) -> None:
    audio = _tone(rate, 2.3) + _tone(rate, 2.3, freq=1_700.0, amplitude=0.2)
    data = _pcm16(audio)
    whole = soxr.resample(np.frombuffer(data, "<i2").astype(np.float32) / 32768, rate, 16_000)
    max_bytes = [2, 64, 2 * rate // 10, 2 * rate, 2 * rate // 3, 2 * 997][seed]
    streamed = _decode_split(InputAudioDecoder("pcm16", rate), data, _random_splits(len(data), max_bytes, 2, seed))
    assert abs(len(streamed) - len(audio) * 16_000 / rate) <= 1
    assert len(streamed) == len(whole)
    np.testing.assert_allclose(streamed, whole, atol=1e-5)


@pytest.mark.parametrize("rate", [8_000, 44_100, 48_000])
def test_float32_input_is_resampled_like_pcm16(rate: int) -> None:
    audio = _tone(rate, 1.5, freq=1_000.0)
    as_float = _decode_split(InputAudioDecoder("float32", rate), audio.astype("<f4").tobytes(), [4 * rate // 5] * 10)
    as_pcm = _decode_split(InputAudioDecoder("pcm16", rate), _pcm16(audio), [2 * rate // 5] * 10)
    assert len(as_float) == len(as_pcm) == round(len(audio) * 16_000 / rate)
    np.testing.assert_allclose(as_float, as_pcm, atol=1e-3)  # PCM16 quantisation
    spectrum = np.abs(np.fft.rfft(as_float))
    assert np.fft.rfftfreq(len(as_float), 1 / 16_000)[spectrum.argmax()] == pytest.approx(1_000.0, abs=2.0)


def test_resampled_full_scale_audio_stays_within_the_encoders_range() -> None:
    square = np.sign(np.sin(2 * np.pi * 3_000 * np.arange(44_100) / 44_100)).astype(np.float32)
    decoded = _decode_split(InputAudioDecoder("float32", 44_100), square.astype("<f4").tobytes(), [4 * 11_025] * 4)
    assert np.abs(decoded).max() <= 1.0


def test_decode_after_flush_is_a_programming_error() -> None:
    decoder = InputAudioDecoder("pcm16", 8_000)
    decoder.flush()
    assert decoder.flush().size == 0
    with pytest.raises(RuntimeError, match="make a new one"):
        decoder.decode(b"\x00\x00")


def test_output_pcm16_clips_and_round_trips() -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.5, -7.0, np.nan], np.float32)
    decoded = np.frombuffer(encode_pcm16_24k(samples), "<i2")
    np.testing.assert_array_equal(decoded, [0, 16384, -16384, 32767, -32767, 32767, -32767, 0])
    with pytest.raises(ValueError, match="mono"):
        encode_pcm16_24k(np.zeros((2, 3), np.float32))


def _voice(f0: float, tilt: float, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with vibrato: a crude stand-in for two different voices."""
    t = np.arange(int(16_000 * seconds)) / 16_000
    phase = 2 * np.pi * f0 * (t + 0.002 * np.sin(2 * np.pi * 5 * t))
    wave = sum((k**-tilt) * np.sin(k * phase) for k in range(1, 30) if k * f0 < 7_500)
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 0.01
    return (0.3 * wave / np.abs(wave).max() + noise).astype(np.float32)


def test_speaker_embedding_is_a_deterministic_unit_vector_that_tells_voices_apart() -> None:
    low, high = _voice(110.0, 1.0), _voice(240.0, 2.0)
    a, b = smoke_speaker_embedding(low), smoke_speaker_embedding(high)
    assert a.shape == (SPEAKER_DIM,) and a.dtype == np.float32
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(a, smoke_speaker_embedding(low.copy()))
    same_voice_again = smoke_speaker_embedding(_voice(110.0, 1.0, seconds=3.0, seed=1))
    assert float(a @ same_voice_again) > float(a @ b) + 0.1


def test_voice_prompt_bounds() -> None:
    two_seconds = _pcm16(_voice(150.0, 1.5))
    assert decode_voice_prompt(two_seconds).shape == (32_000,)
    with pytest.raises(AudioFormatError, match="odd count"):
        decode_voice_prompt(two_seconds + b"\x00")
    with pytest.raises(AudioFormatError, match="at most 30 s"):
        decode_voice_prompt(b"\x00\x00" * (30 * 16_000 + 1))
    with pytest.raises(AudioFormatError, match=r"at least 0\.5 s"):
        decode_voice_prompt(b"\x00\x00" * 100)
