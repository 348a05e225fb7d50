"""libFuzzer (atheris) harness for the client audio decoder, in process, no server.

Run it with ``python -m tests.fuzz.atheris_audio -max_total_time=60`` (``make fuzz`` does) or a few
hundred runs (``-runs=500``, the test suite's smoke run). The input bytes pick the encoding (a name
or a raw enum number), the rate (any int32), and the chunks; a finding is any exception other than
``AudioFormatError`` or an output that is not finite float32 in [-1, 1].
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["orchestrator"]):
    import numpy as np

    from orchestrator.audio import AudioFormatError, InputAudioDecoder

_NAMES = ["pcm16", "float32", "PCM16", " Float32 ", "", "encoding_unspecified", "mp3"]


def _format(data: atheris.FuzzedDataProvider) -> tuple[str | int, int]:
    encoding: str | int = (
        data.PickValueInList(_NAMES) if data.ConsumeBool() else data.ConsumeIntInRange(-(2**31), 2**31 - 1)
    )
    rate = data.PickValueInList([0, 8_000, 16_000, 44_100, 48_000]) if data.ConsumeBool() else data.ConsumeInt(4)
    return encoding, rate


def _check(samples: np.ndarray) -> None:
    if samples.dtype != np.float32 or samples.ndim != 1:
        raise AssertionError(f"decoder returned {samples.dtype} of shape {samples.shape}")
    if not np.isfinite(samples).all() or np.abs(samples).max(initial=0.0) > 1.0:
        raise AssertionError("decoder returned samples that are not finite or outside [-1, 1]")


def test_one_input(raw: bytes) -> None:
    data = atheris.FuzzedDataProvider(raw)
    encoding, rate = _format(data)
    try:
        decoder = InputAudioDecoder(encoding, rate)
    except AudioFormatError as exc:
        assert str(exc)
        return
    for _ in range(data.ConsumeIntInRange(1, 4)):
        try:
            _check(decoder.decode(data.ConsumeBytes(data.ConsumeIntInRange(0, 4_096))))
        except AudioFormatError as exc:
            assert str(exc)
    _check(decoder.flush())


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
