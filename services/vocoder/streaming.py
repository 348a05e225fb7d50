"""Left-context memory that lets the causal layers of the flow run chunk by chunk exactly.

Every attention layer of the flow uses a chunk mask (a frame sees its own chunk and earlier
chunks) and every convolution is causal, so the output for a finished chunk never depends on later
input. A pass therefore only has to compute the frames that are new or not yet final, reading the
keys/values and convolution context of the final frames from a :class:`StreamMemory`. The whole
utterance in one pass and the same utterance pushed in pieces give the same numbers (up to float
rounding), and each stream holds memory bounded by the attention window (``left_chunks``).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_slot_ids = itertools.count()


def new_slot() -> int:
    """A process-unique key for one layer's entry in a :class:`StreamMemory`."""
    return next(_slot_ids)


class StreamMemory:
    """What one network (at one time resolution) remembers between passes of a stream.

    Before a pass the caller sets ``commit``: how many leading frames of the pass are final. Layers
    read their left context from ``slots`` and store the context the next pass needs, which starts
    ``commit`` frames into this pass. ``advance`` then moves ``offset`` (the absolute index of the
    first frame of a pass) past the committed frames.
    """

    def __init__(self, chunk: int, left_chunks: int) -> None:
        self.chunk = chunk
        self.left_chunks = left_chunks
        self.offset = 0
        self.commit = 0
        self.slots: dict[int, Any] = {}

    def advance(self) -> None:
        self.offset += self.commit
        self.commit = 0

    def nbytes(self) -> int:
        tensors = [t for slot in self.slots.values() for t in (slot if isinstance(slot, tuple) else (slot,))]
        return sum(t.numel() * t.element_size() for t in tensors)

    def conv_input(self, slot: int, x: Tensor, context: int) -> Tensor:
        """Time-major ``x`` (``[B, T, C]``) with its ``context`` causal left frames prepended."""
        if context == 0:
            return x
        previous = self.slots.get(slot)
        if previous is None:
            previous = x.new_zeros(x.shape[0], context, x.shape[2])
        full = torch.cat([previous, x], dim=1)
        self.slots[slot] = full[:, self.commit : self.commit + context]
        return full

    def keys_values(self, slot: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, int]:
        """Prepend remembered keys/values (``[B, H, T, D]``); returns them and the first key position."""
        previous = self.slots.get(slot)
        if previous is not None:
            k = torch.cat([previous[0], k], dim=2)
            v = torch.cat([previous[1], v], dim=2)
        cached = 0 if previous is None else previous[0].shape[2]
        first_pos = self.offset - cached
        end = cached + self.commit
        next_offset = self.offset + self.commit
        keep_from = 0
        if self.left_chunks >= 0:
            needed = max(0, (next_offset // self.chunk - self.left_chunks) * self.chunk)
            keep_from = max(0, needed - first_pos)
        self.slots[slot] = (k[:, :, keep_from:end], v[:, :, keep_from:end])
        return k, v, first_pos


def chunk_mask(q_pos: Tensor, k_pos: Tensor, chunk: int, left_chunks: int) -> Tensor:
    """``[Tq, Tk]`` True where a query may attend a key: same or earlier chunk, within the window."""
    qc = torch.div(q_pos, chunk, rounding_mode="floor")[:, None]
    kc = torch.div(k_pos, chunk, rounding_mode="floor")[None, :]
    allowed = kc <= qc
    if left_chunks >= 0:
        allowed = allowed & (kc >= qc - left_chunks)
    return allowed


def positions(memory: StreamMemory | None, length: int, device: torch.device, first: int = -1) -> Tensor:
    """Absolute positions ``[first, first + length)``; ``first`` defaults to the pass offset."""
    start = (memory.offset if memory is not None else 0) if first < 0 else first
    return torch.arange(start, start + length, device=device)


class CausalConv1d(nn.Conv1d):
    """A stride-1 causal convolution on time-major input ``[B, T, C]`` -> ``[B, T, C_out]``.

    The weights keep ``nn.Conv1d``'s layout (checkpoints load unchanged); running it as one matmul
    over unfolded frames avoids the flow's transposes and oneDNN's per-call overhead on tiny inputs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        self.context = kernel_size - 1
        self.slot = new_slot()

    def forward(self, x: Tensor, memory: StreamMemory | None = None) -> Tensor:  # type: ignore[override]
        x = F.pad(x, (0, 0, self.context, 0)) if memory is None else memory.conv_input(self.slot, x, self.context)
        if self.context:
            x = x.unfold(1, self.context + 1, 1)  # [B, T, C, k]
        return F.linear(x.reshape(x.shape[0], x.shape[1], -1), self.weight.reshape(self.out_channels, -1), self.bias)
