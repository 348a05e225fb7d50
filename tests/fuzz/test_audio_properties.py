"""Properties of the client audio decoder over random bytes, rates and encodings (no server).

The contract: every input either decodes to float32 16 kHz PCM in [-1, 1] of the expected length, or
raises ``AudioFormatError`` with a message; nothing else escapes, and no NaN ever comes out.
Expected length: after ``flush()``, a stream of ``n`` samples at ``rate`` Hz gives ``n * 16000 / rate``
samples, within one sample (soxr rounds the fractional last sample).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestrator.audio import MAX_RATE, MIN_RATE, AudioFormatError, InputAudioDecoder
from tests.fuzz.counts import count
from tests.fuzz.strategies import AUDIO_BYTES, INT32, SAMPLE_RATES, VALID_RATES

PROPERTY = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def check_output(samples: np.ndarray) -> None:
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert np.isfinite(samples).all(), "NaN or Inf left the decoder"
    assert np.abs(samples).max(initial=0.0) <= 1.0


def check_error(exc: AudioFormatError) -> None:
    assert str(exc).strip(), "an AudioFormatError must say what to fix"


def decode_stream(encoding: str | int, rate: int, chunks: list[bytes]) -> tuple[np.ndarray | None, list[str]]:
    """Decode chunk by chunk like a session does: a bad chunk is reported and skipped, the stream goes on."""
    try:
        decoder = InputAudioDecoder(encoding, rate)
    except AudioFormatError as exc:
        check_error(exc)
        return None, [str(exc)]
    pieces, errors = [], []
    for chunk in chunks:
        try:
            pieces.append(decoder.decode(chunk))
        except AudioFormatError as exc:
            check_error(exc)
            errors.append(str(exc))
    pieces.append(decoder.flush())
    for piece in pieces:
        check_output(piece)
    return np.concatenate(pieces), errors


@PROPERTY
@given(
    rate=VALID_RATES,
    sizes=st.lists(st.integers(1, 48_000), min_size=1, max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
@example(rate=44_100, sizes=[1], seed=0)  # one sample at a rate that does not divide 16 kHz
@example(rate=8_000, sizes=[8_000, 8_000], seed=1)  # two full 1 s chunks
def test_valid_pcm16_at_any_rate_decodes_to_the_expected_length(rate: int, sizes: list[int], seed: int) -> None:
    count("unit.audio.valid_pcm16")
    effective = rate or 16_000
    sizes = [min(size, effective) for size in sizes]  # at most 1 s per chunk, as the API says
    rng = np.random.default_rng(seed)
    chunks = [rng.integers(-32768, 32768, size, dtype=np.int64).astype("<i2").tobytes() for size in sizes]
    out, errors = decode_stream("pcm16", rate, chunks)
    assert out is not None and errors == []
    expected = sum(sizes) * 16_000 / effective
    assert abs(len(out) - expected) <= 1, (len(out), expected)


@PROPERTY
@given(encoding=st.sampled_from(["pcm16", "float32", "PCM16", "FLOAT32", "", 0, 1, 2]), rate=SAMPLE_RATES)
@example(encoding="float32", rate=-1)
@example(encoding=1, rate=2**31 - 1)
def test_any_rate_is_accepted_in_range_or_rejected_with_the_range(encoding: str | int, rate: int) -> None:
    count("unit.audio.rates")
    try:
        decoder = InputAudioDecoder(encoding, rate)
    except AudioFormatError as exc:
        assert not MIN_RATE <= (rate or 16_000) <= MAX_RATE
        assert f"{MIN_RATE} to {MAX_RATE}" in str(exc)
        return
    assert decoder.sample_rate_hz == (rate or 16_000)


@PROPERTY
@given(encoding=st.one_of(st.text(max_size=12), INT32))
@example(encoding=7)  # an unknown enum number, as a Transcribe config can carry (was INTERNAL: ValueError)
@example(encoding=-1)
@example(encoding=" Float32 ")
def test_unknown_encodings_are_rejected_by_name(encoding: str | int) -> None:
    count("unit.audio.encodings")
    known = {"pcm16", "float32", "", "encoding_unspecified"}
    try:
        decoder = InputAudioDecoder(encoding, 16_000)
    except AudioFormatError as exc:
        assert "use PCM16 or FLOAT32" in str(exc)
        assert (encoding not in (0, 1, 2)) if isinstance(encoding, int) else encoding.strip().lower() not in known
        return
    assert decoder.encoding in ("pcm16", "float32")


@PROPERTY
@given(
    encoding=st.sampled_from(["pcm16", "float32"]),
    rate=SAMPLE_RATES,
    chunks=st.lists(AUDIO_BYTES, min_size=1, max_size=4),
)
@example(encoding="float32", rate=16_000, chunks=[np.array([0.1, np.nan], "<f4").tobytes()])
@example(encoding="float32", rate=22_050, chunks=[np.array([np.inf], "<f4").tobytes(), b"\x00" * 8])
@example(encoding="pcm16", rate=8_000, chunks=[b"", b"\x00", b"\x00\x00" * 8_001])
def test_any_bytes_decode_or_raise_the_typed_error(encoding: str, rate: int, chunks: list[bytes]) -> None:
    count("unit.audio.any_bytes")
    out, errors = decode_stream(encoding, rate, chunks)
    if out is None:
        return
    width = 2 if encoding == "pcm16" else 4
    good = [c for c in chunks if c and len(c) % width == 0 and len(c) // width <= (rate or 16_000)]
    if encoding == "pcm16":
        # PCM16 has no invalid sample values: only empty, odd-length and over-1-s chunks are refused.
        assert len(errors) == len(chunks) - len(good)
        assert abs(len(out) - sum(len(c) // 2 for c in good) * 16_000 / (rate or 16_000)) <= 1
    else:
        assert len(errors) >= len(chunks) - len(good)


@PROPERTY
@given(
    samples=st.lists(st.floats(min_value=-1, max_value=1, width=32), min_size=1, max_size=500),
    position=st.integers(0, 499),
    special=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    rate=VALID_RATES,
)
def test_nan_or_inf_anywhere_is_refused_and_the_stream_goes_on(
    samples: list[float], position: int, special: float, rate: int
) -> None:
    count("unit.audio.nan_inf")
    poisoned = np.asarray(samples, "<f4")
    index = position % len(poisoned)
    poisoned[index] = special
    decoder = InputAudioDecoder("float32", rate)
    with pytest.raises(AudioFormatError, match=f"NaN or Inf \\(first at sample {index}\\)"):
        decoder.decode(poisoned.tobytes())
    clean = np.asarray(samples, "<f4")
    check_output(np.concatenate([decoder.decode(clean.tobytes()), decoder.flush()]))


@PROPERTY
@given(rate=VALID_RATES, extra=st.integers(1, 50_000), encoding=st.sampled_from(["pcm16", "float32"]))
def test_chunks_over_one_second_are_refused_with_the_limit(rate: int, extra: int, encoding: str) -> None:
    count("unit.audio.huge")
    effective = rate or 16_000
    width = 2 if encoding == "pcm16" else 4
    decoder = InputAudioDecoder(encoding, rate)
    with pytest.raises(AudioFormatError, match=f"at most 1 s \\({effective} samples\\)"):
        decoder.decode(b"\x00" * width * (effective + extra))
