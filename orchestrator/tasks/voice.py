"""Voice prompt -> the 192-dim speaker embedding the vocoder's SPEAKER input takes.

MinMo's token2wav (CosyVoice 2) conditions on a CAM++ x-vector of the prompt voice. The smoke
profile has no CAM++ model, so :func:`smoke_speaker_embedding` stands in for it: a fixed, seeded
random projection of the prompt's log-mel statistics (per-bin mean with the overall level removed,
and per-bin spread), L2-normalised like an x-vector. It is deterministic, different voices give
different directions, and it has the real embedding's shape and scale; it is *not* a speaker
model (it does not ignore what is said or the channel). The real profile replaces it with a CAM++
model served next to the others; callers go through :data:`SpeakerEmbedder`, so only the
function passed to ``Synthesizer`` changes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import kaldi_native_fbank as knf
import numpy as np

from orchestrator.audio import MODEL_RATE, PCM16_SCALE, AudioFormatError, decode_pcm16

SPEAKER_DIM = 192
N_MELS = 80
MAX_PROMPT_SECONDS = 30.0
MIN_PROMPT_SECONDS = 0.5
_PROJECTION_SEED = 20250106  # fixed: the same prompt must give the same voice on every replica

SpeakerEmbedder = Callable[[np.ndarray], np.ndarray]
"""16 kHz float32 PCM in [-1, 1] -> float32 [SPEAKER_DIM] speaker embedding."""


def decode_voice_prompt(data: bytes) -> np.ndarray:
    """`SynthesizeRequest.voice_prompt` (16 kHz mono PCM16) -> float32 samples, checked for length."""
    limit = int(MAX_PROMPT_SECONDS * MODEL_RATE) * 2
    if len(data) > limit:
        raise AudioFormatError(
            f"voice_prompt holds {len(data) / 2 / MODEL_RATE:.1f} s of audio; at most {MAX_PROMPT_SECONDS:g} s "
            f"({limit} bytes of 16 kHz mono PCM16): cut it to a few seconds of the voice"
        )
    samples = decode_pcm16(data, what="voice_prompt")
    if len(samples) < MIN_PROMPT_SECONDS * MODEL_RATE:
        raise AudioFormatError(
            f"voice_prompt holds {len(samples) / MODEL_RATE:.2f} s of audio; send at least "
            f"{MIN_PROMPT_SECONDS:g} s of 16 kHz mono PCM16 speech (or none for the default voice)"
        )
    return samples


def smoke_speaker_embedding(pcm: np.ndarray) -> np.ndarray:
    """Smoke stand-in for CAM++: seeded projection of log-mel statistics, unit length, [192] float32."""
    frames = _log_mel(pcm)
    mean = frames.mean(axis=0)
    stats = np.concatenate([mean - mean.mean(), frames.std(axis=0)])
    vector = _projection() @ stats
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:  # cannot happen with a Gaussian projection unless the prompt is all one value
        vector = np.ones(SPEAKER_DIM)
        norm = float(np.sqrt(SPEAKER_DIM))
    return (vector / norm).astype(np.float32)


def _log_mel(pcm: np.ndarray) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = MODEL_RATE
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = N_MELS
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(MODEL_RATE, (pcm * np.float32(PCM16_SCALE)).astype(np.float32))
    fbank.input_finished()
    frames = np.array([fbank.get_frame(i) for i in range(fbank.num_frames_ready)], dtype=np.float64)
    if frames.size == 0:
        raise AudioFormatError(f"voice_prompt is too short for one 25 ms frame; send at least {MIN_PROMPT_SECONDS} s")
    return frames


@cache
def _projection() -> np.ndarray:
    rng = np.random.default_rng(_PROJECTION_SEED)
    return rng.standard_normal((SPEAKER_DIM, 2 * N_MELS)) / np.sqrt(2 * N_MELS)
