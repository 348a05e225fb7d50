"""One gRPC channel to Triton, unary calls for the stateless-response models, streams for the rest.

Every model is stateful (sequence batching), so every call names its stream by ``sequence_id`` and
marks its first and last request with ``start`` / ``end``.

Every call has a deadline (``deadline_seconds``): a unary call's gRPC timeout, and for a stream the
longest wait for the next response while one is expected. Without it a stalled network path, or a
Python backend stub that died mid-request (Triton then never answers the request), hangs the turn
forever; with it the caller gets ``TritonUnavailableError`` and the session recovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferResult, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from orchestrator.observability.tracing import trace_headers
from orchestrator.triton.errors import TritonStageError, TritonUnavailableError
from services.triton.responses import INVALID_PREFIX

Tensors = Mapping[str, np.ndarray]
# Texts by which Triton (unary status, sequence batcher, dtype checks) and our adapters (streamed
# errors carry no status code) mark a request the caller must fix.
_INVALID_MARKERS = ("INVALID_ARG", INVALID_PREFIX, "must specify the START flag", "unexpected")
# Texts of failures that go away by themselves or by an operator's action (a restart, a model reload):
# the server or the path to it is down, a call ran past its deadline, or a model's backend stub died
# (Triton 2.51 keeps such a model READY but answers "Stub process '<model>_0_0' is not healthy").
_UNAVAILABLE_MARKERS = (
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "Deadline Exceeded",
    "failed to connect",
    "is not ready",
    "unknown model",
    "is not healthy",
)
DEFAULT_DEADLINE_SECONDS = 10.0
# gRPC retries a lost connection with exponential backoff up to 120 s by default: after a Triton
# restart the orchestrator would fail fast for minutes. Capped, it reconnects within ~2 s.
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def to_inputs(tensors: Tensors) -> list[triton_aio.InferInput]:
    """Wrap arrays as Triton inputs, adding the batch dimension of 1 every model config declares."""
    inputs = []
    for name, array in tensors.items():
        batched = np.ascontiguousarray(array)[None]
        item = triton_aio.InferInput(name, list(batched.shape), np_to_triton_dtype(batched.dtype))
        item.set_data_from_numpy(batched)
        inputs.append(item)
    return inputs


def stream_request(
    model: str, request_id: str, tensors: Tensors, *, sequence_id: int, start: bool, end: bool
) -> service_pb2.ModelInferRequest:
    """A streaming request that asks for the empty FINAL response.

    Without ``triton_enable_empty_final_response`` a decoupled model's closing flag never reaches
    the client, which then cannot tell a finished request from a slow one. tritonclient's own
    stream helper refuses that reserved parameter, so the protobuf is built here.
    """
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    for name, array in tensors.items():
        batched = np.ascontiguousarray(array)[None]
        tensor = request.inputs.add(name=name, datatype=np_to_triton_dtype(batched.dtype), shape=batched.shape)
        del tensor  # the shape and type are all a raw input needs
        request.raw_input_contents.append(batched.tobytes())
    request.parameters["sequence_id"].int64_param = sequence_id
    request.parameters["sequence_start"].bool_param = start
    request.parameters["sequence_end"].bool_param = end
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    return request


def from_result(result: Any) -> dict[str, np.ndarray]:
    response = result.get_response()
    return {output.name: result.as_numpy(output.name)[0] for output in response.outputs}


def classify(model: str, exc: Exception) -> TritonStageError:
    message = exc.message() if isinstance(exc, InferenceServerException) else str(exc)
    status = exc.status() if isinstance(exc, InferenceServerException) else None
    text = f"{status or ''} {message}"
    if any(marker in text for marker in _UNAVAILABLE_MARKERS):
        return TritonUnavailableError(model, message, status=str(status or ""))
    invalid = any(marker in text for marker in _INVALID_MARKERS)
    return TritonStageError(model, message, invalid=invalid, status=str(status or ""))


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
            url, ssl=ssl, root_certificates=root_certificates, channel_args=_CHANNEL_OPTIONS
        )
        if ssl:
            roots = Path(root_certificates).read_bytes() if root_certificates else None
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            self._channel = grpc.aio.secure_channel(url, credentials, options=_CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.insecure_channel(url, options=_CHANNEL_OPTIONS)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)

    async def infer(self, model: str, tensors: Tensors, *, sequence_id: int, start: bool = False, end: bool = False):
        try:
            result = await self.client.infer(
                model,
                to_inputs(tensors),
                sequence_id=sequence_id,
                sequence_start=start,
                sequence_end=end,
                client_timeout=self.deadline_seconds,
                # W3C traceparent: Triton's own spans join the turn's trace when its tracing is on.
                headers=trace_headers() or None,
            )
        except InferenceServerException as exc:
            raise classify(model, exc) from exc
        return from_result(result)

    def open_stream(self, model: str) -> ModelStream:
        return ModelStream(self._stub, model, deadline_seconds=self.deadline_seconds)

    async def statistics(self, model: str) -> dict[str, Any]:
        stats = await self.client.get_inference_statistics(model_name=model, as_json=True)
        return dict(stats["model_stats"][0])

    async def close(self) -> None:
        await self.client.close()
        await self._channel.close()


class ModelStream:
    """A bidi gRPC stream to one decoupled model carrying one request at a time, in order.

    Cancelling the stream cancels the request in flight on the server (the model sees
    ``is_cancelled()``), which is how an interruption stops generation within one step.
    The deadline counts only while a response is awaited: a stream idle between requests (the
    session's backbone context between turns) or a reader paused by backpressure never expires.
    """

    def __init__(
        self,
        stub: service_pb2_grpc.GRPCInferenceServiceStub,
        model: str,
        *,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
    ) -> None:
        self.model = model
        self.deadline_seconds = deadline_seconds
        self._queue: asyncio.Queue[service_pb2.ModelInferRequest | None] = asyncio.Queue()
        # gRPC metadata is per call: a stream carries the trace context current when it is opened.
        self._call = stub.ModelStreamInfer(self._requests(), metadata=tuple(trace_headers().items()) or None)
        self._responses = self._call.__aiter__()
        self._lock = asyncio.Lock()
        self._next_id = 0
        self.cancelled = False

    async def _requests(self) -> AsyncIterator[service_pb2.ModelInferRequest]:
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
                stream_request(self.model, str(self._next_id), tensors, sequence_id=sequence_id, start=start, end=end)
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
                message = await asyncio.wait_for(self._responses.__anext__(), self.deadline_seconds)
            except TimeoutError as exc:
                self.cancel()  # the server may still answer later: those responses belong to no request
                raise TritonUnavailableError(
                    self.model, f"no response within the {self.deadline_seconds:g} s deadline (DEADLINE_EXCEEDED)"
                ) from exc
            except StopAsyncIteration as exc:
                raise TritonUnavailableError(self.model, "stream closed by the server") from exc
            except grpc.aio.AioRpcError as exc:
                raise classify(self.model, InferenceServerException(exc.details(), str(exc.code()))) from exc
            if message.error_message:
                raise classify(self.model, InferenceServerException(message.error_message))
            response = message.infer_response
            if response.outputs:
                yield from_result(InferResult(response))
            if response.parameters["triton_final_response"].bool_param:
                return

    def cancel(self) -> None:
        self.cancelled = True
        self._call.cancel()

    async def close(self) -> None:
        if not self.cancelled:
            await self._queue.put(None)
