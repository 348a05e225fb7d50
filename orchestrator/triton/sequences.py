"""Ending a Triton sequence whose stream may have been stopped: one way for turns and tasks."""

from __future__ import annotations

import contextlib

from orchestrator.triton.protocol import Tensors
from orchestrator.triton.routed import ModelCalls
from orchestrator.triton.stream import ModelStream


async def end_sequence(models: ModelCalls, stream: ModelStream, sequence_id: int, tensors: Tensors) -> None:
    """Send END for ``sequence_id`` (``tensors``: the model's empty request) and read its answer.

    On ``stream`` itself while it is usable. A stopped stream is waited for first (bounded by its
    deadline backstop) and the END goes on a new gRPC stream: an END that reached Triton before the
    STOP would close the sequence first, and the STOP would then find no sequence to stop.
    """
    closer = stream
    if stream.cancelled:
        await stream.wait_ended()
        closer = models.open_stream(stream.model)
    try:
        async with contextlib.aclosing(closer.request(tensors, sequence_id=sequence_id, end=True)) as responses:
            async for _ in responses:
                pass
    finally:
        if closer is not stream:
            await closer.close()
