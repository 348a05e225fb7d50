"""Feeding a ChatML conversation (``minmo_contracts.prompt``) into a backbone session, on the models' side.

The prompt layout itself is a contract the orchestrator shares, so it lives in ``minmo_contracts.prompt``
(torch-free); this module adds :func:`feed`, which needs the session's torch tensors, and re-exports the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch

from minmo_contracts.prompt import ChatPrompt, Segment, SpeechSlot, SpeechTurn, TextTurn, Turn, merge_segments

__all__ = ["ChatPrompt", "Segment", "SpeechSlot", "SpeechTurn", "TextTurn", "Turn", "feed", "merge_segments"]


class _Appendable(Protocol):
    def append(self, ids: Sequence[int] | None = None, embeds: torch.Tensor | None = None) -> torch.Tensor: ...


def feed(session: _Appendable, segments: Sequence[Segment], speech: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Append ``segments`` to ``session``; return the last-layer states of the final segment."""
    last: torch.Tensor | None = None
    for segment in segments:
        if isinstance(segment, SpeechSlot):
            if segment.key not in speech:
                raise KeyError(f"no speech embeddings for slot {segment.key!r}; got keys {sorted(speech)}")
            last = session.append(embeds=speech[segment.key])
        elif segment:
            last = session.append(ids=segment)
    if last is None:
        raise ValueError("feed got no non-empty segment")
    return last
