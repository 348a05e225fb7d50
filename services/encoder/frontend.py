"""Incremental frontend: PCM -> kaldi fbank -> LFR stacking -> CMVN, identical for any chunking.

The whole-utterance path runs these same objects on the whole input at once, so the frontend cannot
make the streaming and whole paths diverge: kaldi fbank with ``snip_edges`` and no dither is exact
under any split of the waveform, and LFR frame ``i`` reads fbank frames by a fixed index rule.
"""

from __future__ import annotations

from typing import Any

import kaldi_native_fbank as knf
import numpy as np
import torch

from services.encoder.config import EncoderConfig

# SenseVoice's frontend feeds kaldi fbank with 16-bit-scaled samples; its CMVN statistics assume it.
PCM_SCALE = 32768.0


def validate_pcm(pcm: Any, config: EncoderConfig, sample_rate: int | None, *, allow_empty: bool) -> np.ndarray:
    """Return ``pcm`` if it is mono float32 PCM in [-1, 1] at the configured rate, else raise ValueError."""
    if sample_rate is not None and sample_rate != config.sample_rate:
        raise ValueError(f"encoder expects {config.sample_rate} Hz PCM, got {sample_rate} Hz: resample first")
    if not isinstance(pcm, np.ndarray):
        raise ValueError(f"pcm must be a numpy array of float32 samples, got {type(pcm).__name__}")
    if pcm.dtype != np.float32:
        raise ValueError(f"pcm must be float32 in [-1, 1], got dtype {pcm.dtype}; convert int16 with x / 32768")
    if pcm.ndim != 1:
        raise ValueError(f"pcm must be mono 1-D [samples], got shape {tuple(pcm.shape)}")
    if pcm.size == 0:
        if allow_empty:
            return pcm
        raise ValueError("pcm is empty: pass at least one sample")
    if not np.isfinite(pcm).all():
        raise ValueError("pcm contains NaN or Inf samples")
    peak = float(np.abs(pcm).max())
    if peak > 1.0:
        raise ValueError(f"pcm must lie in [-1, 1], peak is {peak:.4g}: int16-scaled samples? divide by 32768")
    return pcm


class FbankExtractor:
    """Kaldi fbank over a waveform that arrives in pieces; returns each frame exactly once."""

    def __init__(self, config: EncoderConfig) -> None:
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = config.sample_rate
        opts.frame_opts.frame_length_ms = config.frame_length_ms
        opts.frame_opts.frame_shift_ms = config.frame_shift_ms
        opts.frame_opts.dither = 0.0
        opts.frame_opts.window_type = "hamming"
        opts.frame_opts.snip_edges = True
        opts.mel_opts.num_bins = config.n_mels
        opts.energy_floor = 0.0
        self._sample_rate = config.sample_rate
        self._n_mels = config.n_mels
        self._fbank = knf.OnlineFbank(opts)
        self._read = 0

    def accept(self, pcm: np.ndarray) -> np.ndarray:
        """Feed samples and return the newly completed frames, ``[k, n_mels]`` float32."""
        if pcm.size:
            self._fbank.accept_waveform(self._sample_rate, pcm * np.float32(PCM_SCALE))
        ready = self._fbank.num_frames_ready
        frames = np.empty((ready - self._read, self._n_mels), dtype=np.float32)
        for row, index in enumerate(range(self._read, ready)):
            frames[row] = self._fbank.get_frame(index)
        if ready > self._read:
            # Indices stay absolute after pop; dropping read frames bounds a long session's memory.
            self._fbank.pop(ready - self._read)
        self._read = ready
        return frames


class LfrStacker:
    """Low frame rate stacking as SenseVoice does it, emitting each LFR frame once it is complete.

    LFR frame ``i`` concatenates fbank frames ``clamp(lfr_n*i + j - pad, 0, T-1)`` for ``j < lfr_m``
    with ``pad = (lfr_m-1)//2``: the left edge repeats the first frame, the right edge (only at
    ``final``) the last one. A whole utterance of ``T`` fbank frames gives ``ceil(T / lfr_n)`` frames.
    """

    def __init__(self, config: EncoderConfig) -> None:
        self._m = config.lfr_m
        self._n = config.lfr_n
        self._pad = (config.lfr_m - 1) // 2
        self._buffer = np.zeros((0, config.n_mels), dtype=np.float32)
        self._base = 0  # absolute fbank index of _buffer[0]
        self._total = 0  # fbank frames received so far
        self._next = 0  # next LFR index to emit

    def push(self, frames: np.ndarray, final: bool) -> np.ndarray:
        """Append fbank frames; return the LFR frames now complete, ``[k, n_mels*lfr_m]``."""
        self._buffer = np.concatenate([self._buffer, frames]) if len(self._buffer) else frames
        self._total += len(frames)
        # Before the end, frame i is complete once its last source frame n*i + m-1-pad has arrived.
        complete = max(0, (self._total - self._m + self._pad) // self._n + 1)
        stop = -(-self._total // self._n) if final else complete
        if stop <= self._next:
            return np.zeros((0, self._buffer.shape[1] * self._m), dtype=np.float32)
        starts = np.arange(self._next, stop) * self._n - self._pad
        index = np.clip(starts[:, None] + np.arange(self._m)[None, :], 0, self._total - 1) - self._base
        out = self._buffer[index].reshape(len(starts), -1)
        self._next = stop
        keep_from = max(0, self._next * self._n - self._pad)
        if keep_from > self._base:
            self._buffer = self._buffer[keep_from - self._base :]
            self._base = keep_from
        return out


class Cmvn(torch.nn.Module):
    """Global CMVN on LFR frames, ``(x + add_shift) * rescale``, as SenseVoice's am.mvn defines it.

    ``add_shift`` is the negated mean (am.mvn ``<AddShift>``), ``rescale`` the inverse standard
    deviation (am.mvn ``<Rescale>``), so a real am.mvn imports without arithmetic.
    """

    add_shift: torch.Tensor
    rescale: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("add_shift", torch.zeros(dim))
        self.register_buffer("rescale", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.add_shift) * self.rescale
