"""Left-context memory that lets the causal layers of the flow run chunk by chunk exactly, many streams at once.

Every attention layer of the flow uses a chunk mask (a frame sees its own chunk and earlier
chunks) and every convolution is causal, so the output for a finished chunk never depends on later
input. A pass therefore only has to compute the frames that are new or not yet final, reading the
keys/values and convolution context of the final frames from a :class:`StreamMemory`. The whole
utterance in one pass and the same utterance pushed in pieces give the same numbers (up to float
rounding), and each stream holds memory bounded by the attention window (``left_chunks``).

A pass runs the streams of a batch together through a :class:`BatchMemory`: each stream's frames
are right-padded to the longest pass and its remembered keys are right-aligned, so every layer runs
once for all streams and only the masks differ per stream.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_slot_ids = itertools.count()


def new_slot() -> int:
    """A process-unique key for one layer's entry in a :class:`StreamMemory`."""
    return next(_slot_ids)


class StreamMemory:
    """What one network (at one time resolution) remembers between passes of one stream.

    ``offset`` is the absolute index of the first frame of the next pass. ``slots`` hold each
    layer's left context (conv input frames, attention keys/values) with the stream's batch rows
    first: one row, or two in the estimator (both guidance branches). Only
    :meth:`BatchMemory.commit` changes it, once a whole pass has succeeded.
    """

    def __init__(self, chunk: int, left_chunks: int) -> None:
        self.chunk = chunk
        self.left_chunks = left_chunks
        self.offset = 0
        self.slots: dict[int, Any] = {}

    def nbytes(self) -> int:
        tensors = [t for slot in self.slots.values() for t in (slot if isinstance(slot, tuple) else (slot,))]
        return sum(t.numel() * t.element_size() for t in tensors)


class BatchMemory:
    """One pass of a network over several streams, each reading and (later) updating its own memory.

    Stream ``b`` owns the batch rows ``[b * rows, (b + 1) * rows)``; its pass has ``lengths[b]``
    frames (right-padded to the longest), of which the first ``commits[b]`` are final. What the next
    pass needs is held back until :meth:`commit`, so a pass that raises leaves every memory as it was.
    """

    def __init__(
        self, memories: Sequence[StreamMemory], commits: Sequence[int], lengths: Sequence[int], rows: int = 1
    ) -> None:
        if not memories or not len(memories) == len(commits) == len(lengths):
            raise ValueError("a batch pass needs one commit count and one length per stream memory")
        self.memories, self.commits, self.lengths, self.rows = list(memories), list(commits), list(lengths), rows
        self.chunk, self.left_chunks = memories[0].chunk, memories[0].left_chunks
        self._pending: list[dict[int, Any]] = [{} for _ in memories]
        self._masks: dict[tuple[int, ...], Tensor] = {}

    def commit(self) -> None:
        """Store every stream's new left context and move its offset past the committed frames."""
        for memory, pending, commit in zip(self.memories, self._pending, self.commits, strict=True):
            memory.slots.update(pending)
            memory.offset += commit

    def _rows(self, b: int) -> slice:
        return slice(b * self.rows, (b + 1) * self.rows)

    def _own(self, value: Tensor) -> Tensor:
        # a view of a batch tensor would keep the whole batch's activations alive in one stream's memory
        return value.clone() if len(self.memories) > 1 else value

    def conv_input(self, slot: int, x: Tensor, context: int) -> Tensor:
        """Time-major ``x`` (``[B * rows, T, C]``) with each stream's ``context`` causal left frames prepended."""
        if context == 0:
            return x
        zeros = x.new_zeros(self.rows, context, x.shape[2])
        previous = [memory.slots.get(slot, zeros) for memory in self.memories]
        full = torch.cat([torch.cat(previous) if len(previous) > 1 else previous[0], x], dim=1)
        for b, commit in enumerate(self.commits):
            self._pending[b][slot] = self._own(full[self._rows(b), commit : commit + context])
        return full

    def keys_values(self, slot: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Prepend each stream's remembered keys/values (``[B * rows, H, T, D]``), right-aligned.

        With ``cached`` remembered keys in front, key ``j`` of every stream lies ``cached - j``
        frames before its first query, so relative positions are the same for all streams. Returns
        keys, values and the ``[B * rows, 1, T, cached + T]`` mask of what each query may attend.
        """
        previous = [memory.slots.get(slot) for memory in self.memories]
        held = [0 if p is None else p[0].shape[2] for p in previous]
        cached = max(held)
        if cached:
            k = torch.cat([self._right_aligned([None if p is None else p[0] for p in previous], held, k), k], dim=2)
            v = torch.cat([self._right_aligned([None if p is None else p[1] for p in previous], held, v), v], dim=2)
        for b, (memory, commit) in enumerate(zip(self.memories, self.commits, strict=True)):
            start, end = cached - held[b], cached + commit
            if self.left_chunks >= 0:
                needed = max(0, ((memory.offset + commit) // self.chunk - self.left_chunks) * self.chunk)
                start += max(0, needed - (memory.offset - held[b]))
            keys, values = k[self._rows(b), :, start:end], v[self._rows(b), :, start:end]
            self._pending[b][slot] = (self._own(keys), self._own(values))
        return k, v, self._mask(held, k.shape[2] - cached, cached, k.device)

    def _right_aligned(self, parts: list[Tensor | None], held: list[int], like: Tensor) -> Tensor:
        cached = max(held)
        present = [p for p in parts if p is not None]
        if len(present) == len(parts) and all(h == cached for h in held):
            return present[0] if len(present) == 1 else torch.cat(present)
        out = like.new_zeros(like.shape[0], like.shape[1], cached, like.shape[3])
        for b, (part, h) in enumerate(zip(parts, held, strict=True)):
            if part is not None and h:
                out[self._rows(b), :, cached - h :] = part
        return out

    def _mask(self, held: list[int], t: int, cached: int, device: torch.device) -> Tensor:
        """Chunk window at each stream's own positions, minus padding keys; padding queries see all."""
        key = (t, cached, *held)
        if key not in self._masks:
            offsets = torch.tensor([m.offset for m in self.memories], device=device)[:, None]
            q_pos = offsets + torch.arange(t, device=device)
            k_pos = offsets - cached + torch.arange(cached + t, device=device)
            allowed = chunk_mask(q_pos, k_pos, self.chunk, self.left_chunks)
            j = torch.arange(cached + t, device=device)[None, None, :]
            first = torch.tensor([cached - h for h in held], device=device)[:, None, None]
            lengths = torch.tensor(self.lengths, device=device)[:, None, None]
            allowed = allowed & (j >= first) & (j < cached + lengths)
            padding = torch.arange(t, device=device)[None, :, None] >= lengths
            self._masks[key] = (allowed | padding).repeat_interleave(self.rows, dim=0)[:, None]
        return self._masks[key]


def chunk_mask(q_pos: Tensor, k_pos: Tensor, chunk: int, left_chunks: int) -> Tensor:
    """``[..., Tq, Tk]`` True where a query may attend a key: same or earlier chunk, within the window."""
    qc = torch.div(q_pos, chunk, rounding_mode="floor")[..., :, None]
    kc = torch.div(k_pos, chunk, rounding_mode="floor")[..., None, :]
    allowed = kc <= qc
    if left_chunks >= 0:
        allowed = allowed & (kc >= qc - left_chunks)
    return allowed


def self_mask(length: int, device: torch.device, chunk: int, left_chunks: int) -> Tensor:
    """The chunk mask of a whole utterance in one pass (no memory): positions from 0."""
    pos = torch.arange(length, device=device)
    return chunk_mask(pos, pos, chunk, left_chunks)


class CausalConv1d(nn.Conv1d):
    """A stride-1 causal convolution on time-major input ``[B, T, C]`` -> ``[B, T, C_out]``.

    The weights keep ``nn.Conv1d``'s layout (checkpoints load unchanged); running it as one matmul
    over unfolded frames avoids the flow's transposes and oneDNN's per-call overhead on tiny inputs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        self.context = kernel_size - 1
        self.slot = new_slot()

    def forward(self, x: Tensor, memory: BatchMemory | None = None) -> Tensor:  # type: ignore[override]
        x = F.pad(x, (0, 0, self.context, 0)) if memory is None else memory.conv_input(self.slot, x, self.context)
        return unfolded_conv(self, x)


def unfolded_conv(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """A stride-1, unpadded ``conv`` on time-major ``x`` (``[B, T + k - 1, C]``) as one matmul -> ``[B, T, C_out]``.

    Unlike oneDNN's convolution, whose algorithm (and so its rounding) depends on the batch size, a
    matmul gives every stream the same numbers alone and in a batch.
    """
    kernel = conv.weight.shape[2]
    if kernel > 1:
        x = x.unfold(1, kernel, 1)  # [B, T, C, k]
    return F.linear(x.reshape(x.shape[0], x.shape[1], -1), conv.weight.reshape(conv.out_channels, -1), conv.bias)
