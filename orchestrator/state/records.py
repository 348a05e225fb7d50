"""What the store keeps: a session's record and its acknowledged turns, with their byte-exact encoding.

A turn's JSON is the idempotency key of ``append_turn`` (Redis compares the stored and the offered
bytes), so the encoding must be deterministic: sorted keys, fixed separators, no floats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Role = Literal["user", "assistant"]
# The tenant of every call under ``--auth none``, and of every session stored before tenants existed.
DEFAULT_TENANT = "default"
_ROLES = ("user", "assistant")


@dataclass(frozen=True)
class StoredTurn:
    """One acknowledged turn; ``sequence`` counts 1, 2, 3 ... within the session with no gaps."""

    sequence: int
    role: Role
    text: str  # assistant: truncated to what was played; user: transcript or typed text, "" when unknown
    token_ids: tuple[int, ...]  # assistant: backbone ids as played; typed user text: its ids; user speech: ()
    audio_ms: int  # user speech duration or assistant audio played
    interrupted: bool = False
    # A spoken user turn's encoder embeddings (float32, row-major, rows x embedding_dim), so a resumed
    # session rebuilds the backbone context exactly; stored apart from the history list (it is large).
    speech_embeddings: bytes = b""
    embedding_dim: int = 0

    def __post_init__(self) -> None:
        if self.sequence < 1:
            raise ValueError(f"turn sequence starts at 1, got {self.sequence}")
        if self.role not in _ROLES:
            raise ValueError(f"turn role must be one of {_ROLES}, got {self.role!r}")
        if self.audio_ms < 0:
            raise ValueError(f"audio_ms must be >= 0, got {self.audio_ms}")
        if bool(self.speech_embeddings) != (self.embedding_dim > 0):
            raise ValueError("speech_embeddings and a positive embedding_dim come together")
        if self.embedding_dim and len(self.speech_embeddings) % (4 * self.embedding_dim):
            raise ValueError(
                f"speech_embeddings ({len(self.speech_embeddings)} bytes) is not whole float32 rows of "
                f"{self.embedding_dim}"
            )

    def speech_matrix(self) -> np.ndarray:
        """The embeddings as a (rows, embedding_dim) float32 array; (0, 0) when the turn has none."""
        if not self.embedding_dim:
            return np.zeros((0, 0), np.float32)
        return np.frombuffer(self.speech_embeddings, np.float32).reshape(-1, self.embedding_dim)


@dataclass(frozen=True)
class SessionRecord:
    """A session's state: its config, when it began, the resume cursor and the live stream's owner."""

    session_id: str
    config: dict[str, Any]  # JSON-able
    created_at: float  # Unix time
    next_sequence: int  # the sequence the next acknowledged turn takes (the resume cursor)
    owner: str | None  # the orchestrator replica holding the lease, None when no one does
    # Whose session it is; records from before tenants existed belong to the default tenant (auth none).
    tenant: str = DEFAULT_TENANT


def encode_turn(turn: StoredTurn) -> bytes:
    """The turn's list entry; the embeddings travel separately."""
    body = {
        "seq": turn.sequence,
        "role": turn.role,
        "text": turn.text,
        "tokens": [int(token) for token in turn.token_ids],
        "audio_ms": int(turn.audio_ms),
        "interrupted": bool(turn.interrupted),
        "dim": int(turn.embedding_dim),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode_turn(raw: bytes, speech: bytes = b"") -> StoredTurn:
    body = json.loads(raw)
    return StoredTurn(
        sequence=body["seq"],
        role=body["role"],
        text=body["text"],
        token_ids=tuple(body["tokens"]),
        audio_ms=body["audio_ms"],
        interrupted=body["interrupted"],
        speech_embeddings=speech,
        embedding_dim=body["dim"] if speech else 0,
    )
