"""Speaker embeddings for the vocoder's ``SPEAKER`` input: CosyVoice's named voices and CAM++ prompts.

``spk2info.pt`` maps a speaker id to a dict holding the CAM++ x-vector ``[1, 192]``: ``embedding``
in the SFT voices CosyVoice 1 ships, ``flow_embedding`` (and an equal ``llm_embedding``) in the
entries CosyVoice 2's ``add_zero_shot_spk`` + ``save_spkinfo`` write (beside the prompt's tokens and
mel, which our vocoder does not use: it conditions on the x-vector only). The importer stores them
as ``voices.safetensors`` (name -> ``[192]`` float32) beside the vocoder weights. ``campplus.onnx``
turns a 16 kHz voice prompt into such an embedding; :func:`embed_voice` runs it the way CosyVoice's
frontend does: 80-bin Kaldi fbank (25/10 ms, povey window, no dither) on samples in [-1, 1], minus
the per-utterance mean of each bin, input ``[1, frames, 80]``.
"""

from __future__ import annotations

from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import onnx
import onnxruntime
import torch
from safetensors.torch import load_file, save_file

from services.importers.errors import CheckpointError
from services.importers.torch_files import load_pt

VOICES_FILE = "voices.safetensors"
CAMPPLUS_FILE = "campplus.onnx"
SPEAKER_DIM = 192
FBANK_BINS = 80


def read_spk2info(path: Path, dim: int = SPEAKER_DIM) -> dict[str, torch.Tensor]:
    """Named voices from ``spk2info.pt``, each a finite ``[dim]`` float32 vector."""
    info = load_pt(path)
    if not isinstance(info, dict) or not info:
        raise CheckpointError(f"{path} must map speaker ids to dicts with an 'embedding' or a 'flow_embedding'")
    voices: dict[str, torch.Tensor] = {}
    for name, entry in info.items():
        # The flow's x-vector is what the vocoder conditions on; SFT entries have only `embedding`.
        emb = None
        if isinstance(entry, dict):
            emb = entry.get("flow_embedding", entry.get("embedding"))
        if not isinstance(emb, torch.Tensor) or emb.numel() != dim:
            got = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
            raise CheckpointError(f"{path}: speaker {name!r} embedding: expected (1, {dim}), got {got}")
        vector = emb.detach().reshape(dim).to(torch.float32).contiguous()
        if not bool(torch.isfinite(vector).all()):
            raise CheckpointError(f"{path}: speaker {name!r} embedding has NaN or Inf")
        voices[str(name)] = vector
    return voices


def save_voices(directory: Path, voices: dict[str, torch.Tensor]) -> None:
    save_file(voices, str(directory / VOICES_FILE), metadata={"speaker_dim": str(SPEAKER_DIM)})


def load_voices(directory: Path) -> dict[str, torch.Tensor]:
    """Named ``[192]`` embeddings of an imported vocoder folder (empty when it has none)."""
    path = directory / VOICES_FILE
    return load_file(str(path)) if path.is_file() else {}


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def check_campplus(path: Path) -> str:
    """Refuse a file that is not a CAM++ embedder: one input [B, T, 80] and one output [B, 192]."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (CosyVoice 2's CAM++ speaker embedder)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for a corrupt file
        raise CheckpointError(f"{path} is not an ONNX model: {exc}") from None
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    outputs = list(model.graph.output)
    in_dims = _dims(inputs[0]) if len(inputs) == 1 else []
    out_dims = _dims(outputs[0]) if len(outputs) == 1 else []
    if len(in_dims) != 3 or in_dims[2] != FBANK_BINS or not out_dims or out_dims[-1] != SPEAKER_DIM:
        raise CheckpointError(
            f"{path}: expected one input [batch, frames, {FBANK_BINS}] and one output [batch, {SPEAKER_DIM}], "
            f"got inputs {[(i.name, _dims(i)) for i in inputs]} and outputs {[(o.name, _dims(o)) for o in outputs]}"
        )
    return inputs[0].name


def check_speech_tokenizer(path: Path) -> None:
    """``speech_tokenizer_v2.onnx`` takes a 128-bin whisper log-mel ``[1, 128, T]`` and its length."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (CosyVoice 2's speech tokenizer)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise CheckpointError(f"{path} is not an ONNX model: {exc}") from None
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 2 or len(_dims(inputs[0])) != 3 or _dims(inputs[0])[1] != 128:
        raise CheckpointError(
            f"{path}: expected inputs (feats [1, 128, T], feats_length [1]), got {[(i.name, _dims(i)) for i in inputs]}"
        )


def campplus_fbank(wav16k: np.ndarray) -> np.ndarray:
    """CosyVoice's CAM++ input features ``[frames, 80]`` for float PCM in [-1, 1] at 16 kHz."""
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = FBANK_BINS
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(16000, wav16k.astype(np.float32, copy=False))
    fbank.input_finished()
    feats = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]).astype(np.float32)
    return feats - feats.mean(axis=0, keepdims=True)


class VoiceEmbedder:
    """CAM++ through onnxruntime: a voice prompt (16 kHz float PCM) -> the ``SPEAKER`` input ``[192]``."""

    def __init__(self, campplus: Path) -> None:
        self._input = check_campplus(campplus)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(campplus), options, providers=["CPUExecutionProvider"])

    def __call__(self, wav16k: np.ndarray) -> np.ndarray:
        if wav16k.ndim != 1 or wav16k.size < 400:
            raise ValueError("a voice prompt must be mono 16 kHz PCM of at least one 25 ms frame (400 samples)")
        if not np.isfinite(wav16k).all() or float(np.abs(wav16k).max()) > 1.0:
            raise ValueError("a voice prompt must be finite float PCM in [-1, 1]")
        feats = campplus_fbank(wav16k)[None]
        (embedding,) = self._session.run(None, {self._input: feats})[:1]
        return np.asarray(embedding, dtype=np.float32).reshape(SPEAKER_DIM)


def embed_voice(wav16k: np.ndarray, campplus: Path) -> np.ndarray:
    """One-shot form of :class:`VoiceEmbedder` (build the embedder once to embed many prompts)."""
    return VoiceEmbedder(campplus)(wav16k)
