"""A backbone stream's context as the TensorRT-LLM engine sees it: token ids, fake ids, a prompt table.

The engine takes a whole prompt per request and keeps no per-stream state; the CPU backbone keeps a
growing KV cache per stream. The GPU backbone model bridges the two with this class: it holds the stream's
positions (real ids for text, ``vocab_size + row`` for speech rows of ``prompt_embedding_table``),
resends them on every request and lets ``enable_kv_cache_reuse`` skip the prefix already computed.
Truncate and fork are list operations here, which is why they cost nothing on the GPU path.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

import numpy as np

from minmo_contracts.backbone import INPUT_IDS, SUFFIX_IDS


@dataclass(frozen=True)
class EngineInput:
    """One engine request's prompt: ``input_ids`` [n] int32, ``prompt_table`` [rows, dim], ``extra_ids`` [n].

    ``extra_ids`` is 0 for text and a content hash for speech positions: TensorRT-LLM keys reused
    KV blocks by (id, extra id), and fake id ``vocab_size + 3`` means different audio in every turn.
    """

    input_ids: np.ndarray
    prompt_table: np.ndarray
    extra_ids: np.ndarray

    @property
    def prompt_vocab_size(self) -> int:
        return int(self.prompt_table.shape[0])


def speech_extra_id(row: np.ndarray) -> int:
    """A non-zero 63-bit id of one embedding row's bytes (0 is reserved for "no extra id")."""
    digest = hashlib.blake2b(np.ascontiguousarray(row, dtype=np.float32).tobytes(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") & ((1 << 63) - 1)) or 1


def append_extra_id(salt: int, offset: int) -> int:
    """A non-zero 63-bit extra id for position ``offset`` of the append salted ``salt``."""
    digest = hashlib.blake2b(f"{salt}:{offset}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") & ((1 << 63) - 1)) or 1


def to_engine_input(
    input_ids: list[int],
    speech: np.ndarray | None,
    suffix_ids: list[int],
    *,
    vocab_size: int,
    first_row: int = 0,
    salt: int | None = None,
) -> EngineInput:
    """Our ``INPUT_IDS`` + ``SPEECH_EMBEDDINGS`` [n, dim] + ``SUFFIX_IDS`` as one engine prompt.

    Speech row ``i`` becomes id ``vocab_size + first_row + i`` and row ``first_row + i`` of the table
    (``first_row`` counts the speech rows already in the stream's context). With a ``salt`` every
    position gets an extra id of its own (the executor path: appended positions must never match
    another request's KV blocks, see :mod:`services.gpu_profile.executor_requests`); without, text
    positions get 0 and speech rows a hash of their content.
    """
    for name, ids in ((INPUT_IDS.name, input_ids), (SUFFIX_IDS.name, suffix_ids)):
        bad = [i for i in ids if not 0 <= i < vocab_size]
        if bad:
            raise ValueError(f"{name} holds ids outside [0, {vocab_size}): {bad[:5]}")
    rows = np.zeros((0, 0), np.float32) if speech is None else np.asarray(speech, np.float32)
    if rows.ndim != 2:
        raise ValueError(f"speech embeddings must be [n, dim], got shape {rows.shape}")
    fake = vocab_size + first_row + np.arange(rows.shape[0], dtype=np.int64)
    ids = np.concatenate([np.asarray(input_ids, np.int64), fake, np.asarray(suffix_ids, np.int64)])
    extra = np.zeros(ids.shape[0], np.uint64)
    if salt is not None:
        extra[:] = [append_extra_id(salt, i) for i in range(ids.shape[0])]
    else:
        extra[len(input_ids) : len(input_ids) + rows.shape[0]] = [speech_extra_id(r) for r in rows]
    return EngineInput(input_ids=ids.astype(np.int32), prompt_table=rows, extra_ids=extra)


@dataclass
class EngineContext:
    """The positions of one stream, in conversation order; owned by one backbone stream, not thread-safe."""

    vocab_size: int
    width: int
    max_length: int
    max_rows: int
    ids: list[int] = field(default_factory=list)
    extra_ids: list[int] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.ids)

    def append(
        self, input_ids: list[int], speech: np.ndarray | None, suffix_ids: list[int], *, salted: bool = False
    ) -> int:
        """Add positions (checked against both bounds first, so a refused append changes nothing).

        ``salted``: the appended positions get fresh extra ids (the executor path's KV-reuse rule).
        """
        if speech is not None and (speech.ndim != 2 or speech.shape[1] != self.width):
            raise ValueError(f"speech embeddings must be [n, {self.width}], got {tuple(speech.shape)}")
        salt = secrets.randbits(62) if salted else None
        part = to_engine_input(
            input_ids, speech, suffix_ids, vocab_size=self.vocab_size, first_row=len(self.rows), salt=salt
        )
        n = int(part.input_ids.shape[0])
        if self.length + n > self.max_length:
            raise ValueError(
                f"the context holds {self.length} positions and {n} more would exceed the engine's "
                f"max_seq_len {self.max_length}: truncate it or start a new session"
            )
        if len(self.rows) + part.prompt_vocab_size > self.max_rows:
            raise ValueError(
                f"the context holds {len(self.rows)} speech rows and {part.prompt_vocab_size} more would exceed "
                f"max_prompt_rows {self.max_rows}: raise it in the values file (and rebuild the engine)"
            )
        self.ids.extend(int(i) for i in part.input_ids)
        self.extra_ids.extend(int(e) for e in part.extra_ids)
        self.rows.extend(part.prompt_table)
        return n

    def commit_token(self, token_id: int) -> None:
        """A generated token becomes context, as in the CPU backbone."""
        if self.length + 1 > self.max_length:
            raise ValueError(f"the context is full ({self.max_length} positions)")
        self.ids.append(token_id)
        self.extra_ids.append(0)

    def truncate(self, n: int) -> None:
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot truncate a context of length {self.length} to {n}")
        kept_rows = sum(1 for i in self.ids[:n] if i >= self.vocab_size)
        del self.ids[n:], self.extra_ids[n:], self.rows[kept_rows:]

    def fork(self) -> EngineContext:
        return EngineContext(
            self.vocab_size,
            self.width,
            self.max_length,
            self.max_rows,
            list(self.ids),
            list(self.extra_ids),
            list(self.rows),
        )

    def engine_input(self) -> EngineInput:
        """The whole context as one prompt (the engine reuses the KV blocks it already holds)."""
        table = np.stack(self.rows) if self.rows else np.zeros((0, self.width), np.float32)
        return EngineInput(
            input_ids=np.asarray(self.ids, np.int32),
            prompt_table=table,
            extra_ids=np.asarray(self.extra_ids, np.uint64),
        )
