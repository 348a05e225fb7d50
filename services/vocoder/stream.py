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

:func:`push_batch` advances many streams in one pass (a push is a batch of one): the flow runs once
for all of them, HiFT once per group of equal render windows, and no stream changes until all of
the batch's compute has succeeded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .config import MEL_FRAME_SAMPLES
from .inputs import TokenInput, as_token_ids

if TYPE_CHECKING:
    from .hift import HiFTGenerator
    from .model import Token2Wav


@dataclass(frozen=True)
class VocoderWork:
    """One stream's validated push, waiting for :func:`push_batch`; making it changed nothing."""

    stream: VocoderStream
    tokens: Tensor  # 1-D int64 ids, checked against the vocabulary
    final: bool


@dataclass(frozen=True)
class _Render:
    """The HiFT window a push re-renders: frames from ``start``, after ``lead`` frames of F0 context."""

    mel: Tensor  # [80, lead + T]
    start: int
    lead: int
    phase0: Tensor  # [harmonics] float64, the source phase at ``start``


@dataclass(frozen=True)
class _Staged:
    """A push after the flow: the stream's mel buffer with the new frames and what to render."""

    mel: Tensor
    target: int  # frames emitted once this push is done
    render: _Render | None  # None: nothing new to emit


@dataclass(frozen=True)
class _Emit:
    """Everything a push changes in a stream besides its flow state, applied once the batch succeeded."""

    mel: Tensor
    mel_start: int
    tail: Tensor | None
    phases: Tensor
    phase_start: int
    emitted_frames: int
    final: bool


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

    def prepare(self, tokens: TokenInput, final: bool = False) -> VocoderWork:
        """Validate the tokens; no state change. Raises ValueError (stream unchanged) on bad input or on a
        stream already finished."""
        if self._final:
            raise ValueError("this stream was already pushed with final=True; start a new one with new_stream()")
        return VocoderWork(self, as_token_ids(tokens, self._config.flow.vocab_size), bool(final))

    def push(self, tokens: TokenInput, final: bool = False) -> np.ndarray:
        """Add speech tokens; returns the float32 samples that became stable (possibly none)."""
        return push_batch(self._model, [self.prepare(tokens, final)])[0]

    def _stage(self, mel: Tensor, first: int, received: int, final: bool) -> _Staged:
        """Frames from ``first`` on were (re)computed: newer values replace what the buffer held."""
        keep = first - self._mel_start
        buffer = torch.cat([self._mel[:, :keep], mel], dim=1) if keep >= 0 else mel[:, -keep:]
        target = self._target_frames(received, final)
        if target <= self._emitted_frames:
            return _Staged(buffer, target, None)
        hift, stream = self._model.hift, self._config.stream
        start = max(0, self._emitted_frames - stream.hift_left_frames)
        lead = min(start, hift.f0_predictor.context)
        end = received * self._config.flow.token_mel_ratio
        phase0 = hift.initial_phase() if start == 0 else self._phases[start - self._phase_start]
        window = buffer[:, start - lead - self._mel_start : end - self._mel_start]
        return _Staged(buffer, target, _Render(window, start, lead, phase0))

    def _target_frames(self, received: int, final: bool) -> int:
        ratio = self._config.flow.token_mel_ratio
        if final:
            return received * ratio
        stable = max(0, received - self._config.flow.pre_lookahead_len) * ratio
        return stable - self._config.stream.hift_right_frames

    def _finish(self, staged: _Staged, final: bool, rendered: tuple[Tensor, Tensor] | None) -> tuple[_Emit, Tensor]:
        """Cross-fade the render into the held-back tail; returns the state to apply and the new samples."""
        render = staged.render
        if render is None or rendered is None:
            unchanged = _Emit(
                staged.mel, self._mel_start, self._tail, self._phases, self._phase_start, self._emitted_frames, final
            )
            return unchanged, staged.mel.new_zeros(0)
        audio, phases = rendered
        hift, stream = self._model.hift, self._config.stream
        fresh = audio[(self._emitted_frames - render.start) * MEL_FRAME_SAMPLES :]
        if self._tail is not None:
            fresh = _crossfade(self._tail, fresh, stream.crossfade_samples)
        cut = (staged.target - self._emitted_frames) * MEL_FRAME_SAMPLES
        # own copies: a view would keep the whole batch's audio alive in this stream
        tail = None if final else fresh[cut:].clone()
        drop = max(0, staged.target - stream.hift_left_frames - hift.f0_predictor.context - self._mel_start)
        emit = _Emit(
            staged.mel[:, drop:], self._mel_start + drop, tail, phases.clone(), render.start, staged.target, final
        )
        return emit, fresh[:cut]

    def _apply(self, emit: _Emit) -> None:
        self._mel, self._mel_start, self._tail = emit.mel, emit.mel_start, emit.tail
        self._phases, self._phase_start = emit.phases, emit.phase_start
        self._emitted_frames, self._final = emit.emitted_frames, emit.final


def push_batch(model: Token2Wav, work: Sequence[VocoderWork]) -> list[np.ndarray]:
    """Advance many streams (distinct) by their pushed tokens in one batched pass: the flow's encoder and
    every Euler step of the estimator (both guidance branches) run once for all streams, HiFT once for all
    streams with audio to emit. Returns each stream's float32 samples (possibly empty), identical (1e-5) to
    pushing each stream alone; if it raises, no stream's state changes."""
    _check_batch(model, work)
    if not work:
        return []
    streams = [item.stream for item in work]
    finals = [item.final for item in work]
    with torch.inference_mode():
        speakers = torch.cat([stream._speaker for stream in streams])
        flow = model.flow.advance_batch([s._flow for s in streams], [item.tokens for item in work], speakers, finals)
        staged = [
            stream._stage(mel, first, received, final)
            for stream, mel, first, received, final in zip(
                streams, flow.mels, flow.firsts, flow.received, finals, strict=True
            )
        ]
        rendered = _render_all(model.hift, [s.render for s in staged])
        results = [
            stream._finish(s, final, r) for stream, s, final, r in zip(streams, staged, finals, rendered, strict=True)
        ]
        audio = _to_numpy([samples for _, samples in results])
    flow.commit()
    for stream, (emit, _) in zip(streams, results, strict=True):
        stream._apply(emit)
    return audio


def _check_batch(model: Token2Wav, work: Sequence[VocoderWork]) -> None:
    seen: set[int] = set()
    for item in work:
        if item.stream._model is not model:
            raise ValueError("every stream in a vocoder batch must come from the model that runs the batch")
        if id(item.stream) in seen:
            raise ValueError("a vocoder batch takes at most one push per stream: push the tokens together")
        if item.stream._final:
            raise ValueError("this stream was already pushed with final=True; start a new one with new_stream()")
        seen.add(id(item.stream))


def _render_all(hift: HiFTGenerator, renders: Sequence[_Render | None]) -> list[tuple[Tensor, Tensor] | None]:
    """HiFT once per group of equal windows (same lead and length); returns (audio, phases) per render."""
    groups: dict[tuple[int, int], list[tuple[int, _Render]]] = {}
    for i, render in enumerate(renders):
        if render is not None:
            groups.setdefault((render.lead, render.mel.shape[1]), []).append((i, render))
    out: list[tuple[Tensor, Tensor] | None] = [None] * len(renders)
    for (lead, _), members in groups.items():
        mel = torch.stack([render.mel for _, render in members])
        phase0 = torch.stack([render.phase0.to(mel.device) for _, render in members])
        audio, phases = hift.render_batch(mel, [render.start for _, render in members], phase0, lead)
        for row, (i, _) in enumerate(members):
            out[i] = (audio[row], phases[row])
    return out


def _to_numpy(chunks: list[Tensor]) -> list[np.ndarray]:
    """One device-to-host copy for the whole batch; each stream gets its own float32 array."""
    flat = torch.cat(chunks).cpu().numpy().astype(np.float32, copy=False)
    bounds = np.cumsum([chunk.shape[0] for chunk in chunks])[:-1]
    return [part.copy() for part in np.split(flat, bounds)]


def _crossfade(old: Tensor, new: Tensor, length: int) -> Tensor:
    """Fade from ``old`` into ``new`` over their first ``length`` samples (equal-gain sin^2 ramp)."""
    n = min(length, old.shape[0], new.shape[0])
    ramp = torch.sin(0.5 * math.pi * (torch.arange(n, dtype=torch.float32, device=new.device) + 0.5) / n).pow(2)
    out = new.clone()
    out[:n] = old[:n] * (1.0 - ramp) + new[:n] * ramp
    return out
