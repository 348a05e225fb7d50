"""A bidi gRPC stream to one decoupled model, stopped by asking the model, never by cancelling the RPC.

Triton 2.51 (the server the CPU stack runs; fixed upstream in 25.04, triton-inference-server/server
#8078) can crash with SIGSEGV when a client cancels a call while a response of that call completes:
the cancellation notification is handled after the call's state was freed. An orchestrator that
cancelled its stream on every barge-in crashed the shared Triton under load (reproduced with
``python -m perf.cancel_storm``). So nothing here cancels an RPC in normal operation:

* one pump task per stream owns the response iterator (grpc.aio cancels the RPC when a task awaiting
  a read is cancelled, so readers wait on a queue the pump fills, never on the call);
* ``cancel`` sends a STOP request for the request in flight (same sequence, same request id: the
  model ends that request within one step, like a gRPC cancellation would), then half-closes; Triton
  answers what is left and ends the call with OK, and the pump discards those answers.

The RPC is cancelled only as a backstop, when the server does not end the call within the deadline
after a stop, or when no response arrives within the deadline while one is expected.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Final, TypeAlias

import grpc
import numpy as np
from tritonclient.grpc import InferResult, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from orchestrator.observability.tracing import trace_headers
from orchestrator.triton.errors import TritonStageError, TritonUnavailableError
from orchestrator.triton.protocol import Tensors, classify, from_result, stop_request, stream_request

DEFAULT_DEADLINE_SECONDS = 10.0


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_ENDED: Final = _Marker("ENDED")  # the server ended the call
_CANCELLED: Final = _Marker("CANCELLED")  # ``cancel`` was called: a waiting reader stops at once
_Item: TypeAlias = service_pb2.ModelStreamInferResponse | grpc.aio.AioRpcError | _Marker


class ModelStream:
    """One request at a time, in order; responses of a request end with the server's FINAL flag.

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
        self._outbox: asyncio.Queue[service_pb2.ModelInferRequest | None] = asyncio.Queue()
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        # gRPC metadata is per call: a stream carries the trace context current when it is opened.
        self._call = stub.ModelStreamInfer(self._requests(), metadata=tuple(trace_headers().items()) or None)
        self._pump = asyncio.create_task(self._pump_responses(), name=f"{model}-stream-pump")
        self._lock = asyncio.Lock()
        # Request ids unique across streams and processes: a STOP names the request it stops by its id.
        self._id_prefix = f"{secrets.token_hex(4)}."
        self._next_id = 0
        self._in_flight: tuple[int, str] | None = None  # (sequence id, request id) of the request awaiting FINAL
        self._half_closed = False
        self.cancelled = False

    async def request(
        self, tensors: Tensors, *, sequence_id: int, start: bool = False, end: bool = False
    ) -> AsyncGenerator[dict[str, np.ndarray], None]:
        """Send one request and yield its responses until the server's FINAL flag."""
        async with self._lock:
            if self.cancelled:
                raise TritonStageError(self.model, "stream was cancelled")
            request_id = self._new_id()
            self._in_flight = (sequence_id, request_id)
            self._outbox.put_nowait(
                stream_request(self.model, request_id, tensors, sequence_id=sequence_id, start=start, end=end)
            )
            finished = False
            try:
                async for outputs in self._read_until_final():
                    yield outputs
                finished = True
                self._in_flight = None
            finally:
                if not finished:
                    # Responses of an abandoned request would be read as the next request's: end the stream.
                    self.cancel()

    async def wait_ended(self) -> grpc.StatusCode:
        """Wait until the server has ended the call; its status is OK after a stop or a close."""
        await asyncio.shield(self._pump)
        code: grpc.StatusCode = await self._call.code()
        return code

    def cancel(self) -> None:
        """Stop the request in flight and end the stream; a reader waiting for a response stops now."""
        if self.cancelled:
            return
        self.cancelled = True
        self._inbox.put_nowait(_CANCELLED)
        if not self._half_closed:
            if self._in_flight is not None:
                sequence_id, request_id = self._in_flight
                self._outbox.put_nowait(stop_request(self.model, request_id, sequence_id=sequence_id))
            self._half_close()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # finalised outside the loop (interpreter exit): nothing is left to drain the call
            self._call.cancel()
            return
        loop.call_later(self.deadline_seconds, self._abort_if_open)

    async def close(self) -> None:
        """End the stream after its last request (a cancelled stream is already ending)."""
        if not self.cancelled and not self._half_closed:
            self._half_close()

    def _new_id(self) -> str:
        self._next_id += 1
        return f"{self._id_prefix}{self._next_id}"

    def _half_close(self) -> None:
        self._half_closed = True
        self._outbox.put_nowait(None)

    def _abort_if_open(self) -> None:
        """Backstop: a server that has not ended a stopped call within the deadline is not answering."""
        if not self._pump.done():
            self._call.cancel()

    async def _requests(self) -> AsyncIterator[service_pb2.ModelInferRequest]:
        while (item := await self._outbox.get()) is not None:
            yield item

    async def _pump_responses(self) -> None:
        try:
            async for message in self._call:
                self._inbox.put_nowait(message)
        except grpc.aio.AioRpcError as exc:
            self._inbox.put_nowait(exc)
        except asyncio.CancelledError:
            # The call was cancelled (the backstop, a deadline, or the channel closing): the stream is over.
            self._inbox.put_nowait(_ENDED)
            return
        self._inbox.put_nowait(_ENDED)

    async def _next_item(self) -> _Item:
        try:
            item = await asyncio.wait_for(self._inbox.get(), self.deadline_seconds)
        except TimeoutError as exc:
            self.cancelled = True
            self._call.cancel()  # the server may still answer later: those responses belong to no request
            raise TritonUnavailableError(
                self.model, f"no response within the {self.deadline_seconds:g} s deadline (DEADLINE_EXCEEDED)"
            ) from exc
        if isinstance(item, _Marker | grpc.aio.AioRpcError):
            self._inbox.put_nowait(item)  # the stream is over: every later read sees it too
        return item

    async def _read_until_final(self) -> AsyncIterator[dict[str, np.ndarray]]:
        while True:
            item = await self._next_item()
            if item is _CANCELLED:
                raise TritonStageError(self.model, "stream was cancelled")
            if item is _ENDED:
                raise TritonUnavailableError(self.model, "stream closed by the server")
            if isinstance(item, grpc.aio.AioRpcError):
                raise classify(self.model, InferenceServerException(item.details(), str(item.code())))
            assert isinstance(item, service_pb2.ModelStreamInferResponse)
            if item.error_message:
                raise classify(self.model, InferenceServerException(item.error_message))
            response = item.infer_response
            if response.outputs:
                yield from_result(InferResult(response))
            if response.parameters["triton_final_response"].bool_param:
                return
