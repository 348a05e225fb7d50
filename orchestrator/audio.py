"""Client audio in and out: decode `AudioFormat` chunks to 16 kHz float32, encode 24 kHz PCM16.

The API (``protos/minmo/v1/minmo.proto``) lets a client send PCM16 or FLOAT32 at any rate from
8 kHz to 48 kHz, at most 1 s per chunk; the encoder wants 16 kHz float32 in [-1, 1]. A decoder
lives as long as one client stream and resamples with one ``soxr.ResampleStream``, so chunk joins
add no clicks and the output equals resampling the whole stream at once (soxr's streaming mode is
exact). The format arrives as plain values, not protobuf messages, so this module does not depend
on generated code. Every rejection is an :class:`AudioFormatError` that says what to fix.
"""

from __future__ import annotations

import numpy as np
import soxr

MODEL_RATE = 16_000
OUTPUT_RATE = 24_000
MIN_RATE = 8_000
MAX_RATE = 48_000
MAX_CHUNK_SECONDS = 1.0
PCM16_SCALE = 32768.0

_ENCODINGS = {"pcm16": "pcm16", "float32": "float32", "": "pcm16", "encoding_unspecified": "pcm16"}
# The proto enum's numbers, so a raw field value (also an unknown one a client sent) can be passed as is.
_ENCODING_NUMBERS = {0: "pcm16", 1: "pcm16", 2: "float32"}


class AudioFormatError(ValueError):
    """Client audio the server cannot use; the message says what the client should change."""


class InputAudioDecoder:
    """Decodes one client stream's chunks, in order, to 16 kHz float32 PCM in [-1, 1].

    ``encoding`` is ``"pcm16"`` or ``"float32"`` (the proto's enum names, any case; empty or
    ``ENCODING_UNSPECIFIED`` mean PCM16), or the enum's number as the message holds it (0, 1, 2);
    ``sample_rate_hz`` 0 means 16000, as in the proto.
    """

    def __init__(self, encoding: str | int = "pcm16", sample_rate_hz: int = MODEL_RATE) -> None:
        self.encoding = _encoding(encoding)
        rate = sample_rate_hz or MODEL_RATE
        if not MIN_RATE <= rate <= MAX_RATE:
            raise AudioFormatError(
                f"sample_rate_hz {sample_rate_hz} is not supported; use {MIN_RATE} to {MAX_RATE} Hz (0 means 16000)"
            )
        self.sample_rate_hz = rate
        self._max_samples = int(rate * MAX_CHUNK_SECONDS)
        self._resampler = None if rate == MODEL_RATE else soxr.ResampleStream(rate, MODEL_RATE, 1, dtype="float32")
        self._finished = False

    def decode(self, chunk: bytes) -> np.ndarray:
        """One chunk's bytes -> the 16 kHz samples that are ready (the resampler holds a short tail back)."""
        if self._finished:
            raise RuntimeError("decode() after flush(): a decoder serves one stream; make a new one")
        samples = self._samples(chunk)
        if self._resampler is None:
            return samples
        return _clip(self._resampler.resample_chunk(samples))

    def flush(self) -> np.ndarray:
        """The resampler's remaining tail; call once when the client's audio has ended."""
        if self._finished:
            return np.zeros(0, np.float32)
        self._finished = True
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return _clip(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))

    def _samples(self, chunk: bytes) -> np.ndarray:
        if not chunk:
            raise AudioFormatError("audio chunk is empty; send at least one sample per chunk, or no chunk")
        width = 2 if self.encoding == "pcm16" else 4
        if len(chunk) % width:
            kind = "PCM16 (little-endian int16)" if width == 2 else "FLOAT32 (little-endian IEEE float)"
            raise AudioFormatError(
                f"audio chunk has {len(chunk)} bytes, not a multiple of {width}: {kind} samples are "
                f"{width} bytes each; send whole samples"
            )
        count = len(chunk) // width
        if count > self._max_samples:
            raise AudioFormatError(
                f"audio chunk holds {count} samples ({count / self.sample_rate_hz:.2f} s at {self.sample_rate_hz} Hz); "
                f"send at most {MAX_CHUNK_SECONDS:g} s ({self._max_samples} samples) per chunk"
            )
        if self.encoding == "pcm16":
            return (np.frombuffer(chunk, dtype="<i2").astype(np.float32) / np.float32(PCM16_SCALE)).astype(np.float32)
        samples = np.frombuffer(chunk, dtype="<f4").astype(np.float32)
        finite = np.isfinite(samples)
        if not finite.all():
            index = int(np.flatnonzero(~finite)[0])
            raise AudioFormatError(
                f"FLOAT32 audio chunk holds NaN or Inf (first at sample {index}); send finite samples in [-1, 1]"
            )
        peak = float(np.abs(samples).max())
        if peak > 1.0:
            raise AudioFormatError(
                f"FLOAT32 audio chunk holds samples outside [-1, 1] (peak {peak:.4g}); scale samples to [-1, 1] "
                "(int16 values divided by 32768), or send PCM16"
            )
        return samples


def _encoding(value: str | int) -> str:
    name = _ENCODING_NUMBERS.get(value) if isinstance(value, int) else _ENCODINGS.get(value.strip().lower())
    if name is None:
        raise AudioFormatError(f"audio encoding {value!r} is not supported; use PCM16 or FLOAT32")
    return name


def _clip(samples: np.ndarray) -> np.ndarray:
    # Resampling can overshoot a full-scale input slightly (Gibbs ringing); the encoder rejects |x| > 1.
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


def decode_pcm16(data: bytes, *, what: str = "audio") -> np.ndarray:
    """Whole little-endian PCM16 bytes -> float32 in [-1, 1]; odd byte counts are rejected."""
    if len(data) % 2:
        raise AudioFormatError(
            f"{what} has {len(data)} bytes, an odd count: PCM16 samples are 2 bytes each; send whole samples"
        )
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(PCM16_SCALE)).astype(np.float32)


def encode_pcm16_24k(samples: np.ndarray) -> bytes:
    """24 kHz float32 model output -> little-endian PCM16 bytes, as `AudioDelta` and `SynthesizeResponse` carry.

    The sample rate is the caller's contract (the vocoder's 24 kHz); this only converts and clips.
    """
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"samples must be mono 1-D, got shape {array.shape}")
    array = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.round(np.clip(array, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
