"""Triton stream handling Transcribe and Synthesize share: reading a request whole, ending a session."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import numpy as np

from minmo_contracts import backbone
from orchestrator.triton.client import ModelStream
from orchestrator.triton.routed import ModelCalls
from orchestrator.triton.sequences import end_sequence

T = TypeVar("T")


@contextlib.asynccontextmanager
async def closing(responses: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close a response iterator on any exit: `async for` alone leaves an abandoned one suspended,
    holding its stream's lock, and only its ``aclose`` stops the request in flight."""
    try:
        yield responses
    finally:
        aclose = getattr(responses, "aclose", None)
        if aclose is not None:
            await aclose()


async def drain(responses: AsyncIterator[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """All responses of one request; closing the iterator on any exit stops a request cut off midway."""
    async with closing(responses) as items:
        return [item async for item in items]


async def end_backbone_session(models: ModelCalls, stream: ModelStream, session_id: int) -> None:
    """Send END for a backbone session (its state is kept on a stop, so it must be ended explicitly)."""
    await end_sequence(models, stream, session_id, backbone.end_request())
