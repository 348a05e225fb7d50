"""Streaming token2wav for the speak path: push tokens as the speech LM emits them, play what returns.

Per-stream caches:
- the flow's :class:`~services.vocoder.flow.FlowState` (encoder and per-Euler-step estimator
  memories): final frames are computed once and never change, so the mel a stream sees equals the
  whole-utterance mel whenever chunks are complete (``chunk_size`` 1 in the smoke preset);
- a mel buffer from ``hift_left_frames`` before the last join, the NSF phase at every frame of the
  last render, and the audio that render produced past the join (the held-back tail).

Each push that can emit re-renders HiFT from ``hift_left_frames`` before the join, so the join sees
the same left context as whole synthesis, continues the source phase exactly, and cross-fades its
first ``crossfade_samples`` with the held-back tail. A non-final push holds back
``config.hold_back_samples`` (the frames of the last ``pre_lookahead_len`` tokens, whose mel is
still provisional, plus ``hift_right_frames``); ``final=True`` flushes everything, so the total is
always exactly 960 samples per token.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .config import MEL_FRAME_SAMPLES
from .inputs import TokenInput, as_token_ids

if TYPE_CHECKING:
    from .model import Token2Wav


class VocoderStream:
    """One utterance, pushed in pieces. Not thread-safe: one caller drives a stream at a time."""

    def __init__(self, model: Token2Wav, speaker: Tensor) -> None:
        self._model = model
        self._config = model.config
        self._speaker = speaker
        self._flow = model.flow.new_state()
        self._final = False
        self._emitted_frames = 0
        device = speaker.device
        self._mel = torch.zeros(self._config.flow.output_size, 0, device=device)
        self._mel_start = 0
        self._tail: Tensor | None = None
        self._phases = torch.zeros(0, model.hift.harmonics, dtype=torch.float64, device=device)
        self._phase_start = 0

    @property
    def samples_emitted(self) -> int:
        return self._emitted_frames * MEL_FRAME_SAMPLES

    @property
    def tokens_received(self) -> int:
        return self._flow.received

    @property
    def finished(self) -> bool:
        return self._final

    @property
    def cache_bytes(self) -> int:
        """Memory this stream holds between pushes; bounded by the attention window and the overlap."""
        flow = self._flow
        memories = [flow.token_memory, flow.frame_memory, *flow.step_memories]
        buffers = [flow.window, self._mel, self._phases, *([self._tail] if self._tail is not None else [])]
        return sum(m.nbytes() for m in memories) + sum(t.numel() * t.element_size() for t in buffers)

    def push(self, tokens: TokenInput, final: bool = False) -> np.ndarray:
        """Add speech tokens; returns the float32 samples that became stable (possibly none)."""
        if self._final:
            raise ValueError("this stream was already pushed with final=True; start a new one with new_stream()")
        ids = as_token_ids(tokens, self._config.flow.vocab_size)
        with torch.inference_mode():
            mel, first = self._model.flow.advance(self._flow, ids, self._speaker, final)
            self._store_mel(mel, first)
            audio = self._emit(final)
        self._final = final
        return audio

    def _store_mel(self, mel: Tensor, first: int) -> None:
        """Frames from ``first`` on were (re)computed: newer values replace what the buffer held."""
        keep = first - self._mel_start
        if keep >= 0:
            self._mel = torch.cat([self._mel[:, :keep], mel], dim=1)
        else:
            self._mel = mel[:, -keep:]

    def _target_frames(self, final: bool) -> int:
        received = self._flow.received
        ratio = self._config.flow.token_mel_ratio
        if final:
            return received * ratio
        stable = max(0, received - self._config.flow.pre_lookahead_len) * ratio
        return stable - self._config.stream.hift_right_frames

    def _emit(self, final: bool) -> np.ndarray:
        target = self._target_frames(final)
        if target <= self._emitted_frames:
            return np.zeros(0, dtype=np.float32)
        hift, stream = self._model.hift, self._config.stream
        start = max(0, self._emitted_frames - stream.hift_left_frames)
        lead = min(start, hift.f0_predictor.context)
        end = self._flow.received * self._config.flow.token_mel_ratio
        phase0 = hift.initial_phase() if start == 0 else self._phases[start - self._phase_start]
        mel = self._mel[:, start - lead - self._mel_start : end - self._mel_start]
        audio, self._phases = hift.render(mel, start, phase0, lead)
        self._phase_start = start
        fresh = audio[(self._emitted_frames - start) * MEL_FRAME_SAMPLES :]
        if self._tail is not None:
            fresh = _crossfade(self._tail, fresh, stream.crossfade_samples)
        cut = (target - self._emitted_frames) * MEL_FRAME_SAMPLES
        self._tail = None if final else fresh[cut:]
        self._emitted_frames = target
        drop = max(0, target - stream.hift_left_frames - hift.f0_predictor.context - self._mel_start)
        self._mel = self._mel[:, drop:]
        self._mel_start += drop
        return fresh[:cut].cpu().numpy().astype(np.float32, copy=True)


def _crossfade(old: Tensor, new: Tensor, length: int) -> Tensor:
    """Fade from ``old`` into ``new`` over their first ``length`` samples (equal-gain sin^2 ramp)."""
    n = min(length, old.shape[0], new.shape[0])
    ramp = torch.sin(0.5 * math.pi * (torch.arange(n, dtype=torch.float32, device=new.device) + 0.5) / n).pow(2)
    out = new.clone()
    out[:n] = old[:n] * (1.0 - ramp) + new[:n] * ramp
    return out
