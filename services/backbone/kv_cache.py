"""Per-session key/value cache of a Qwen2 decoder.

A session (one conversation, one listen-path fork, one speech-LM stream) owns one cache. The
storage grows by doubling up to ``max_length`` (the model's ``max_position_embeddings``), so a short
session does not pay for the longest possible context. ``fork()`` exists because the listen path
appends to a copy of the context while the assistant speaks (and a speculative response generates on
one), ``truncate()`` because a barge-in cuts the assistant turn to what was played.
"""

from __future__ import annotations

import torch

_INITIAL_CAPACITY = 64


class KVCache:
    """Keys and values of every layer for positions ``[0, length)``, batch size one.

    Writing is two-phase: :meth:`reserve` before a forward pass, one :meth:`write` per layer, then
    :meth:`commit`. A forward pass that fails half-way therefore leaves ``length`` unchanged and the
    cache consistent (rows past ``length`` are scratch space).
    """

    def __init__(
        self,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        *,
        max_length: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        initial_capacity: int = _INITIAL_CAPACITY,
    ) -> None:
        if max_length < 1:
            raise ValueError("max_length must be at least 1")
        self.max_length = max_length
        capacity = max(1, min(initial_capacity, max_length))
        # One tensor for all layers, K and V: growing or forking is a single copy.
        self._kv = torch.empty(num_layers, 2, num_kv_heads, capacity, head_dim, dtype=dtype, device=device)
        self._length = 0

    @property
    def length(self) -> int:
        return self._length

    @property
    def capacity(self) -> int:
        return self._kv.shape[3]

    @property
    def nbytes(self) -> int:
        """Memory held, for bounding per-stream soft state."""
        return self._kv.numel() * self._kv.element_size()

    def reserve(self, n: int) -> int:
        """Make room for ``n`` more positions and return the first of them."""
        end = self._length + n
        if end > self.max_length:
            raise ValueError(
                f"context would reach {end} positions but the model supports at most {self.max_length} "
                f"(max_position_embeddings); {self.max_length - self._length} positions are left: truncate "
                "the context or start a new session"
            )
        if end > self.capacity:
            new_capacity = min(self.max_length, max(end, 2 * self.capacity))
            grown = self._kv.new_empty(*self._kv.shape[:3], new_capacity, self._kv.shape[4])
            grown[:, :, :, : self._length] = self._kv[:, :, :, : self._length]
            self._kv = grown
        return self._length

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``/``v`` ([kv_heads, n, head_dim]) at ``start`` and return all keys/values so far."""
        end = start + k.shape[1]
        self._kv[layer, 0, :, start:end] = k
        self._kv[layer, 1, :, start:end] = v
        return self._kv[layer, 0, :, :end], self._kv[layer, 1, :, :end]

    def commit(self, n: int) -> None:
        self._length += n

    def truncate(self, n: int) -> None:
        """Forget positions ``>= n``."""
        if not 0 <= n <= self._length:
            raise ValueError(f"cannot truncate a cache of length {self._length} to {n}")
        self._length = n

    def fork(self) -> KVCache:
        """An independent copy: writes to either never show in the other."""
        twin = KVCache.__new__(KVCache)
        twin.max_length = self.max_length
        capacity = min(self.max_length, max(self._length, _INITIAL_CAPACITY))
        twin._kv = self._kv.new_empty(*self._kv.shape[:3], capacity, self._kv.shape[4])
        twin._kv[:, :, :, : self._length] = self._kv[:, :, :, : self._length]
        twin._length = self._length
        return twin
