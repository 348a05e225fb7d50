"""Where the imported vocoder's named voices come from, since the CosyVoice2-0.5B release ships none.

The release folder has no ``spk2info.pt`` (CosyVoice 2 has no pretrained voices: its voices are
zero-shot prompts). So the voices of ``vocoder/voices.safetensors`` are gathered from any of:

- ``spk2info.pt`` in the CosyVoice folder, when there is one (SFT voices, or zero-shot speakers saved
  by CosyVoice 2's ``add_zero_shot_spk`` + ``save_spkinfo``);
- ``--voices FILE``: a voices file we define, the ``voices.safetensors`` format (name -> ``[192]``
  float32 CAM++ x-vector), e.g. the one of an earlier import;
- ``--voice NAME=WAV``: a prompt recording, embedded by the release's own ``campplus.onnx`` the way
  CosyVoice's frontend does (mono, 16 kHz, Kaldi fbank, mean-normalised).

At least one voice is required: it is the default voice of streams that name none. A name given
twice is refused rather than silently overwritten.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from services.importers.errors import CheckpointError
from services.importers.voices import SPEAKER_DIM, VoiceEmbedder, read_spk2info

SPK2INFO = "spk2info.pt"
PROMPT_RATE = 16000


def parse_voice_prompt(spec: str) -> tuple[str, Path]:
    """``NAME=path/to/prompt.wav`` -> (name, path); ValueError naming the expected form."""
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise ValueError(f"--voice {spec!r}: expected NAME=path/to/prompt.wav")
    return name.strip(), Path(path.strip())


def read_prompt(path: Path) -> np.ndarray:
    """A prompt recording as mono float32 PCM at 16 kHz (channels averaged, resampled if needed)."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
        raise CheckpointError(f"voice prompt {path}: cannot read it as audio ({exc})") from None
    mono = audio.mean(axis=1)
    if rate != PROMPT_RATE:
        mono = soxr.resample(mono, rate, PROMPT_RATE).astype(np.float32)
    return np.clip(mono, -1.0, 1.0)


def read_voices_file(path: Path) -> dict[str, torch.Tensor]:
    """A ``voices.safetensors``-format file: every tensor a finite ``[192]`` x-vector."""
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"--voices {path}: not a safetensors voices file ({exc})") from None
    voices = {}
    for name, tensor in tensors.items():
        if tensor.numel() != SPEAKER_DIM or not tensor.is_floating_point():
            raise CheckpointError(
                f"--voices {path}: voice {name!r} is {tuple(tensor.shape)}, expected ({SPEAKER_DIM},)"
            )
        vector = tensor.reshape(SPEAKER_DIM).to(torch.float32)
        if not bool(torch.isfinite(vector).all()):
            raise CheckpointError(f"--voices {path}: voice {name!r} has NaN or Inf")
        voices[name] = vector
    return voices


def gather_voices(
    source: Path, campplus: Path, *, voices_files: list[Path], prompts: dict[str, Path]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Every named voice and where each came from (one line per source, for the import report)."""
    found: dict[str, torch.Tensor] = {}
    report: list[str] = []

    def add(batch: dict[str, torch.Tensor], origin: str) -> None:
        clash = sorted(set(batch) & set(found))
        if clash:
            raise CheckpointError(f"voice names given twice ({origin}): {', '.join(clash)}; rename one")
        found.update(batch)
        report.append(f"{len(batch)} from {origin}")

    if (source / SPK2INFO).is_file():
        add(read_spk2info(source / SPK2INFO, SPEAKER_DIM), str(source / SPK2INFO))
    for path in voices_files:
        add(read_voices_file(path), str(path))
    if prompts:
        embedder = VoiceEmbedder(campplus)
        for name, path in prompts.items():
            try:
                vector = embedder(read_prompt(path))
            except ValueError as exc:
                raise CheckpointError(f"--voice {name}={path}: {exc}") from None
            add({name: torch.from_numpy(vector.copy())}, f"prompt {path}")
    if not found:
        raise CheckpointError(
            f"{source} has no {SPK2INFO} (the CosyVoice2-0.5B release ships no voices): give at least one voice "
            "with --voice NAME=prompt.wav (a recording, embedded by campplus.onnx) or --voices voices.safetensors"
        )
    return found, report
