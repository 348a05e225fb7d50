"""One Triton server's client: unary calls for the models that answer once (encoder, duplex), streams for the rest.

Unary calls go through tritonclient's aio client; the decoupled models' streams through a gRPC channel
of our own (:mod:`orchestrator.triton.stream` says why they are never cancelled).

Every model is stateful (sequence batching), so every call names its stream by ``sequence_id`` and
marks its first and last request with ``start`` / ``end``.

Every call has a deadline (``deadline_seconds``): a unary call's gRPC timeout, and for a stream the
longest wait for the next response while one is expected. Without it a stalled network path, or a
Python backend stub that died mid-request (Triton then never answers the request), hangs the turn
forever; with it the caller gets ``TritonUnavailableError`` and the session recovers.

A model at capacity refuses a new stream (``TritonCapacityError``, RESOURCE_EXHAUSTED for the client).
Triton's sequence batcher holds a slot for a refused sequence until its END or idle timeout, so a
refused START of a unary model is followed by an END for that sequence (in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferResult, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from orchestrator.observability.tracing import trace_headers
from orchestrator.triton.errors import TritonCapacityError
from orchestrator.triton.protocol import CHANNEL_OPTIONS, Tensors, classify, from_result, to_inputs
from orchestrator.triton.stream import DEFAULT_DEADLINE_SECONDS, ModelStream

__all__ = ["DEFAULT_DEADLINE_SECONDS", "ModelStream", "Tensors", "TritonModels", "classify"]


class TritonModels:
    def __init__(
        self,
        url: str,
        *,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        ssl: bool = False,
        root_certificates: str | None = None,
    ) -> None:
        """``ssl``: TLS to Triton's gRPC, verified against ``root_certificates`` (a PEM path; system CAs if None)."""
        if deadline_seconds <= 0:
            raise ValueError(f"deadline_seconds must be > 0, got {deadline_seconds}")
        self.url = url
        self.deadline_seconds = deadline_seconds
        self.client = triton_aio.InferenceServerClient(
            url, ssl=ssl, root_certificates=root_certificates, channel_args=CHANNEL_OPTIONS
        )
        if ssl:
            roots = Path(root_certificates).read_bytes() if root_certificates else None
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            self._channel = grpc.aio.secure_channel(url, credentials, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.insecure_channel(url, options=CHANNEL_OPTIONS)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._background: set[asyncio.Task[None]] = set()

    async def infer(
        self, model: str, tensors: Tensors, *, sequence_id: int, start: bool = False, end: bool = False
    ) -> dict[str, np.ndarray]:
        """One unary call. A caller cancelled while it waits stops waiting; the call itself runs to its end.

        grpc.aio cancels the RPC when the awaiting task is cancelled, and Triton 2.51 can crash when a
        call is cancelled as its response completes (see :mod:`orchestrator.triton.stream`): the call
        is shielded, and only its deadline can cut it short.
        """
        call = asyncio.ensure_future(
            self.client.infer(
                model,
                to_inputs(tensors),
                sequence_id=sequence_id,
                sequence_start=start,
                sequence_end=end,
                client_timeout=self.deadline_seconds,
                # W3C traceparent: Triton's own spans join the turn's trace when its tracing is on.
                headers=trace_headers() or None,
            )
        )
        try:
            result: InferResult = await asyncio.shield(call)
        except InferenceServerException as exc:
            error = classify(model, exc)
            if start and isinstance(error, TritonCapacityError):
                self._end_refused(model, tensors, sequence_id)
            raise error from exc
        except asyncio.CancelledError:
            call.add_done_callback(_discard_outcome)
            raise
        return from_result(result)

    def _end_refused(self, model: str, tensors: Tensors, sequence_id: int) -> None:
        """END a sequence the model refused to start, so the sequence batcher frees its slot now, not at idle."""

        async def end() -> None:
            with contextlib.suppress(InferenceServerException):  # "unknown stream" is the expected answer
                await self.client.infer(
                    model, to_inputs(tensors), sequence_id=sequence_id, sequence_end=True, client_timeout=5.0
                )

        task = asyncio.create_task(end())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def open_stream(self, model: str) -> ModelStream:
        return ModelStream(self._stub, model, deadline_seconds=self.deadline_seconds)

    async def statistics(self, model: str) -> dict[str, Any]:
        stats = await self.client.get_inference_statistics(model_name=model, as_json=True)
        return dict(stats["model_stats"][0])

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self.client.close()
        await self._channel.close()


def _discard_outcome(call: asyncio.Future[Any]) -> None:
    """The outcome of a call nobody waits for any more (its failure would be logged as never retrieved)."""
    if not call.cancelled():
        call.exception()
