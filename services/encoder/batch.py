"""Encoding the pending frames of many encoder streams in one network pass (one kernel call for Triton's batch).

The Triton adapter prepares each request's stream (:meth:`EncoderStream.prepare`: validation and
frontend, stream by stream) and then calls :func:`encode_batch` once for all of them; when that
raises it retries stream by stream. So a failed call must leave every stream as it was: the pass
computes every output and next state first and commits them only when nothing is left to fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from services.encoder.model import SpeechEncoder

if TYPE_CHECKING:
    from services.encoder.stream import EncoderStream


@dataclass(frozen=True)
class EncoderWork:
    """What the network must do now for one stream: its LFR frames ``[n, lfr_dim]`` from index ``start``.

    ``n`` may be 0 (no chunk complete yet). A work applies once: after it, or another work of the
    same stream, has been encoded it is stale and :func:`encode_batch` refuses it.
    """

    stream: EncoderStream
    frames: torch.Tensor
    final: bool
    start: int

    @property
    def size(self) -> int:
        return int(self.frames.shape[0])


def _check(model: SpeechEncoder, work: Sequence[EncoderWork]) -> None:
    seen: set[int] = set()
    for w in work:
        if w.stream.model is not model:
            raise ValueError("encode_batch got the work of a stream of another encoder model")
        if id(w.stream) in seen:
            raise ValueError("encode_batch got two works of one stream: prepare each stream once per step")
        if w.start != w.stream.state.start:
            raise ValueError(
                f"stale encoder work (frames from {w.start}, stream at {w.stream.state.start}): "
                "it or a later work of its stream was already encoded; prepare the stream again"
            )
        seen.add(id(w.stream))


@torch.inference_mode()
def encode_batch(model: SpeechEncoder, work: Sequence[EncoderWork]) -> list[torch.Tensor]:
    """One network pass for the pending frames of many streams (distinct streams of ``model``).

    A work with no frames gives an empty ``[0, llm_dim]`` result without joining the pass. Returns
    each stream's new embeddings ``[n_i, llm_dim]`` in the order of ``work`` and advances each
    stream's caches and counters; if it raises (bad or stale work, or the network), no stream changes.
    """
    _check(model, work)
    busy = [w for w in work if w.size]
    results: dict[int, torch.Tensor] = {}
    if busy:
        frames = busy[0].frames if len(busy) == 1 else torch.cat([w.frames for w in busy])
        out, nexts = model.forward_packed(frames, [w.stream.state for w in busy], [w.size for w in busy])
        pieces = out.split([model.output_count(w.size) for w in busy])
        for w, piece, state in zip(busy, pieces, nexts, strict=True):
            w.stream._advance(w, state, piece.shape[0])
            results[id(w.stream)] = piece
    empty = torch.zeros(0, model.config.llm_dim, device=model.device, dtype=model.dtype)
    return [results.get(id(w.stream), empty) for w in work]
