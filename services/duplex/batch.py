"""Scoring the new frames of many duplex streams in one pass (one scheduler step).

The Triton adapter prepares each request's stream (:meth:`DuplexStream.prepare`: validation only)
and calls :func:`score_batch` once for all of them; when that raises it retries stream by stream,
so a failed call must leave every stream as it was: the pass computes every output and next cache
first and commits them only when nothing is left to fail.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from services.duplex.model import DuplexPredictor, DuplexStream


@dataclass(frozen=True)
class WindowRows:
    """Where the new frames of ``B`` streams stepped together sit, and which keys each frame sees.

    Stream ``b`` brings ``counts[b]`` frames, the first being its frame ``starts[b]``; its keys are its
    cache (its ``keep = window - 1`` previous frames, zero rows before frame 0) then its new frames.
    Row-wise work runs on the packed frames ``[N, d]``; attention on ``[B, n_max, d]``, each stream's
    frames first and zero rows after. The query-key distance is the same for every stream, so only
    ``visible`` is per stream. With equal counts (the usual step) packing and padding are reshapes.
    """

    counts: tuple[int, ...]
    keep: int
    distance: Tensor  # [n_max, keep + n_max] query frame minus key frame
    visible: Tensor  # [B, n_max, keep + n_max]
    slots: Tensor | None  # [N] padded slot b*n_max + j of each packed frame; None when uniform
    shift_rows: Tensor | None  # [B, keep] rows of [cache; new] that form the next cache

    @classmethod
    def build(cls, starts: Sequence[int], counts: Sequence[int], window: int, device: torch.device) -> WindowRows:
        # What a stream sees depends on its start only while it is younger than the window (keys before
        # its frame 0), so steady streaming repeats a few layouts: those (small ones) are cached.
        ages = tuple(min(s, window - 1) for s in starts)
        make = _cached_rows if max(counts) <= window else _make_rows
        return make(ages, tuple(counts), window, device)

    @property
    def batch(self) -> int:
        return len(self.counts)

    @property
    def n_max(self) -> int:
        return int(self.distance.shape[0])

    def pad(self, x: Tensor) -> Tensor:
        """Packed ``[N, w]`` -> ``[B, n_max, w]``, zero rows after each stream's own."""
        if self.slots is None:
            return x.reshape(self.batch, self.n_max, x.shape[-1])
        out = x.new_zeros(self.batch * self.n_max, x.shape[-1])
        return out.index_copy_(0, self.slots, x).view(self.batch, self.n_max, x.shape[-1])

    def unpad(self, y: Tensor) -> Tensor:
        """``[B, n_max, w]`` -> packed ``[N, w]``, dropping the padding rows."""
        flat = y.reshape(self.batch * self.n_max, y.shape[-1])
        return flat if self.slots is None else flat.index_select(0, self.slots)

    def shift(self, full: Tensor) -> Tensor:
        """Each stream's last ``keep`` rows of ``[cache; new]`` ``[B, keep + n_max, w]``: its next cache."""
        if self.shift_rows is None:
            return full[:, self.n_max :]
        return full.gather(1, self.shift_rows[:, :, None].expand(-1, -1, full.shape[-1]))


def _make_rows(starts: tuple[int, ...], counts: tuple[int, ...], window: int, device: torch.device) -> WindowRows:
    keep, n_max = window - 1, max(counts)
    j = torch.arange(n_max, device=device)
    t = torch.arange(-keep, n_max, device=device)  # key index relative to the stream's first new frame
    distance = j[:, None] - t[None, :]
    in_window = (distance >= 0) & (distance < window)
    key_frame = torch.tensor(list(starts), device=device)[:, None] + t
    visible = in_window[None] & (key_frame >= 0)[:, None, :]
    slots = shift_rows = None
    if any(n != n_max for n in counts):
        count = torch.tensor(list(counts), device=device)[:, None]
        # Keys past a stream's new frames are padding; padded queries see every key (so no softmax row
        # is empty) and are dropped by unpad.
        visible = (visible & (t < count)[:, None, :]) | (j >= count)[:, :, None]
        slots = torch.tensor([b * n_max + i for b, n in enumerate(counts) for i in range(n)], device=device)
        shift_rows = count + torch.arange(keep, device=device)
    return WindowRows(counts, keep, distance, visible, slots, shift_rows)


@functools.lru_cache(maxsize=64)
def _cached_rows(starts: tuple[int, ...], counts: tuple[int, ...], window: int, device: torch.device) -> WindowRows:
    # Normal tensors, not inference tensors: a later call with autograd on may reuse them.
    with torch.inference_mode(False):
        return _make_rows(starts, counts, window, device)


@dataclass(frozen=True)
class DuplexWork:
    """One stream's new frames: hidden states ``[n, llm_dim]`` (float32) and speaking flags ``[n]``.

    ``start`` is the stream's frame count when prepared; a work applies once, after which it (or any
    other work prepared before) is stale and :func:`score_batch` refuses it.
    """

    stream: DuplexStream
    hidden: Tensor
    speaking: Tensor
    start: int

    @property
    def size(self) -> int:
        return int(self.hidden.shape[0])


def _check(model: DuplexPredictor, work: Sequence[DuplexWork]) -> None:
    seen: set[int] = set()
    for w in work:
        if w.stream.model is not model:
            raise ValueError("score_batch got the work of a stream of another duplex model")
        if id(w.stream) in seen:
            raise ValueError("score_batch got two works of one stream: prepare each stream once per step")
        if w.start != w.stream.frames_seen:
            raise ValueError(
                f"stale duplex work (frames from {w.start}, stream at {w.stream.frames_seen}): "
                "a work of its stream was scored since it was prepared; prepare it again"
            )
        seen.add(id(w.stream))


def _cat(tensors: list[Tensor]) -> Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


@torch.inference_mode()
def score_batch(model: DuplexPredictor, work: Sequence[DuplexWork]) -> list[Tensor]:
    """Probabilities ``[n_i, 3]`` for each stream's new frames, one pass for all (distinct streams).

    Each stream keeps its own window of ``window - 1`` frames; a work with no frames gives an empty
    ``[0, 3]`` result without joining the pass. If it raises, no stream changes.
    """
    _check(model, work)
    busy = [w for w in work if w.size]
    results: dict[int, Tensor] = {}
    if busy:
        device = busy[0].hidden.device
        rows = WindowRows.build([w.start for w in busy], [w.size for w in busy], model.config.window, device)
        caches = [w.stream.cache for w in busy]
        probs, cache = model.forward_packed(
            _cat([w.hidden for w in busy]),
            _cat([w.speaking for w in busy]),
            caches[0][None] if len(caches) == 1 else torch.stack(caches),
            rows,
        )
        pieces = probs.split([w.size for w in busy])
        for w, piece, next_cache in zip(busy, pieces, cache.unbind(0), strict=True):
            w.stream._advance(w, next_cache)
            results[id(w.stream)] = piece
    empty = torch.zeros(0, model.classifier.out_features, device=model.classifier.weight.device)
    return [results.get(id(w.stream), empty) for w in work]
