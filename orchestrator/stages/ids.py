"""Stream ids: Triton's sequence batcher names a stream by a non-zero unsigned 64-bit correlation id."""

from __future__ import annotations

import secrets


def new_stream_id() -> int:
    """A random non-zero id; 63 bits keep it positive in every signed representation on the way."""
    return secrets.randbits(63) or 1
