"""One gRPC channel to Triton, unary calls for the stateless-response models, streams for the rest.

Every model is stateful (sequence batching), so every call names its stream by ``sequence_id`` and
marks its first and last request with ``start`` / ``end``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from orchestrator.triton.errors import TritonStageError, TritonUnavailableError

Tensors = Mapping[str, np.ndarray]


def to_inputs(tensors: Tensors) -> list[triton_aio.InferInput]:
    """Wrap arrays as Triton inputs, adding the batch dimension of 1 every model config declares."""
    inputs = []
    for name, array in tensors.items():
        batched = np.ascontiguousarray(array)[None]
        item = triton_aio.InferInput(name, list(batched.shape), np_to_triton_dtype(batched.dtype))
        item.set_data_from_numpy(batched)
        inputs.append(item)
    return inputs


def from_result(result: Any) -> dict[str, np.ndarray]:
    response = result.get_response()
    return {output.name: result.as_numpy(output.name)[0] for output in response.outputs}


def classify(model: str, exc: Exception) -> TritonStageError:
    message = exc.message() if isinstance(exc, InferenceServerException) else str(exc)
    status = exc.status() if isinstance(exc, InferenceServerException) else None
    text = f"{status or ''} {message}"
    if "UNAVAILABLE" in text or "failed to connect" in text or "is not ready" in text or "unknown model" in text:
        return TritonUnavailableError(model, message)
    invalid = "INVALID_ARG" in text or "must specify the START flag" in text or "unexpected" in text
    return TritonStageError(model, message, invalid=invalid)


class TritonModels:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = triton_aio.InferenceServerClient(url)

    async def infer(self, model: str, tensors: Tensors, *, sequence_id: int, start: bool = False, end: bool = False):
        try:
            result = await self.client.infer(
                model,
                to_inputs(tensors),
                sequence_id=sequence_id,
                sequence_start=start,
                sequence_end=end,
            )
        except InferenceServerException as exc:
            raise classify(model, exc) from exc
        return from_result(result)

    def open_stream(self, model: str) -> ModelStream:
        return ModelStream(self.client, model)

    async def statistics(self, model: str) -> dict[str, Any]:
        stats = await self.client.get_inference_statistics(model_name=model, as_json=True)
        return dict(stats["model_stats"][0])

    async def close(self) -> None:
        await self.client.close()


class ModelStream:
    """A bidi gRPC stream to one decoupled model carrying one request at a time, in order.

    Cancelling the stream cancels the request in flight on the server (the model sees
    ``is_cancelled()``), which is how an interruption stops generation within one step.
    """

    def __init__(self, client: triton_aio.InferenceServerClient, model: str) -> None:
        self.model = model
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._call = client.stream_infer(self._requests())
        self._responses = self._call.__aiter__()
        self._lock = asyncio.Lock()
        self._next_id = 0
        self.cancelled = False

    async def _requests(self) -> AsyncIterator[dict[str, Any]]:
        while (item := await self._queue.get()) is not None:
            yield item

    async def request(
        self, tensors: Tensors, *, sequence_id: int, start: bool = False, end: bool = False
    ) -> AsyncIterator[dict[str, np.ndarray]]:
        """Send one request and yield its responses until the server's FINAL flag."""
        async with self._lock:
            if self.cancelled:
                raise TritonStageError(self.model, "stream was cancelled")
            self._next_id += 1
            await self._queue.put(
                {
                    "model_name": self.model,
                    "inputs": to_inputs(tensors),
                    "request_id": str(self._next_id),
                    "sequence_id": sequence_id,
                    "sequence_start": start,
                    "sequence_end": end,
                    "parameters": {"triton_enable_empty_final_response": True},
                }
            )
            finished = False
            try:
                async for outputs in self._read_until_final():
                    yield outputs
                finished = True
            finally:
                if not finished:
                    # Responses of an abandoned request would be read as the next request's: end the stream.
                    self.cancel()

    async def _read_until_final(self) -> AsyncIterator[dict[str, np.ndarray]]:
        while True:
            try:
                result, error = await self._responses.__anext__()
            except StopAsyncIteration as exc:
                raise TritonUnavailableError(self.model, "stream closed by the server") from exc
            except (grpc.aio.AioRpcError, InferenceServerException) as exc:
                raise classify(self.model, exc) from exc
            if error is not None:
                raise classify(self.model, error)
            response = result.get_response()
            if response.outputs:
                yield from_result(result)
            if response.parameters["triton_final_response"].bool_param:
                return

    def cancel(self) -> None:
        self.cancelled = True
        self._call.cancel()

    async def close(self) -> None:
        if not self.cancelled:
            await self._queue.put(None)
