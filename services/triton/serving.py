"""What every MinMo adapter needs besides its model, in one object the adapter holds.

An adapter builds a :class:`ModelServing` in ``initialize()`` and hands each request to it with a
function that turns one request into a response (unary models) or into a generator of responses
(decoupled models). The serving object reads the sequence controls, keeps the stream states,
times the work, runs decoupled requests on ordered worker threads, closes a stream on END (also
when the request failed), stops a generation when its stream sends STOP, and turns exceptions into
INVALID_ARG / INTERNAL errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from services.triton.device import instance_device
from services.triton.metrics import ComputeMeter
from services.triton.ordered_executor import OrderedExecutor
from services.triton.params import ModelParameters
from services.triton.requests import SequenceFlags, sequence_flags, stop_requested
from services.triton.responses import error_for, log_unexpected, stream_responses
from services.triton.stateful import StreamRegistry

StateT = TypeVar("StateT")
Respond = Callable[[Any, SequenceFlags], Any]
Produce = Callable[[Any, SequenceFlags, Callable[[], bool]], Iterator[Any]]


class ModelServing(Generic[StateT]):
    def __init__(self, args: dict[str, Any], *, decoupled: bool) -> None:
        import torch

        self.params = ModelParameters.from_args(args)
        self.name = self.params.model_name
        self.device = instance_device(args)  # the adapter moves its module here
        # Small models on a few CPU cores: intra-op threads cost more in synchronisation than they give.
        torch.set_num_threads(self.params.get_int("torch_threads", 1))
        self.streams: StreamRegistry[StateT] = StreamRegistry(self.params)
        self.meter = ComputeMeter(self.name)
        self._executor = OrderedExecutor(self.params.get_int("worker_threads", 2), self.name) if decoupled else None
        # Streams whose generation a client asked to stop (a STOP request; see orchestrator.triton.stream).
        # A set's add / discard / membership test are atomic under the GIL: no lock needed.
        self._stops: set[tuple[int, str]] = set()

    def respond_all(self, requests: list[Any], respond: Respond) -> list[Any]:
        """Unary models: one response per request, an error response for a bad one."""
        return [self._respond(request, respond) for request in requests]

    def stream_all(self, requests: list[Any], produce: Produce, *, free_on_cancel: bool) -> None:
        """Decoupled models: each request streams on a worker thread, in order within its stream.

        ``free_on_cancel`` frees the stream's state when its request is cancelled: right for a
        per-turn stream (the turn is over), wrong for a session whose context must survive.
        """
        assert self._executor is not None, "stream_all needs ModelServing(decoupled=True)"
        for request in requests:
            key = request.correlation_id()
            if stop_requested(request):
                # Marked here, on Triton's thread, so the generation running on a worker sees it at its
                # next step; acknowledged in order, after that generation's FINAL. The STOP carries the id
                # of the request it stops: a request another gRPC stream sent for the same sequence
                # (which may arrive before the STOP) is not stopped by it.
                self._stops.add(_stop_key(request))
                self._executor.submit(key, functools.partial(self._acknowledge_stop, request))
                continue
            self._executor.submit(key, functools.partial(self._stream, request, produce, free_on_cancel))

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
        self.streams.shutdown()

    def _respond(self, request: Any, respond: Respond) -> Any:
        import triton_python_backend_utils as pb_utils

        with self.meter.measure():
            try:
                flags = sequence_flags(request)
                try:
                    return respond(request, flags)
                finally:
                    if flags.end:
                        self.streams.close(flags.stream_id)
            except Exception as exc:
                log_unexpected(self.name, exc)
                return pb_utils.InferenceResponse(error=error_for(exc))

    def _stream(self, request: Any, produce: Produce, free_on_cancel: bool) -> None:
        stream_id = int(request.correlation_id())

        def responses(is_cancelled: Callable[[], bool]) -> Iterator[Any]:
            flags = sequence_flags(request)
            try:
                yield from produce(request, flags, is_cancelled)
            finally:
                if flags.end:
                    self.streams.close(flags.stream_id)

        on_cancel = functools.partial(self.streams.close, stream_id) if free_on_cancel else None
        stopped = functools.partial(self._stops.__contains__, _stop_key(request))
        stream_responses(self.name, request, responses, self.meter, on_cancel=on_cancel, stopped=stopped)

    def _acknowledge_stop(self, request: Any) -> None:
        """The stopped generation (if any) has sent its FINAL: clear the mark and answer the STOP request."""
        self._stops.discard(_stop_key(request))
        stream_responses(self.name, request, lambda _: iter(()), self.meter)


def _stop_key(request: Any) -> tuple[int, str]:
    """A request is named by its stream and its request id (the STOP request repeats its target's id)."""
    return int(request.correlation_id()), str(request.request_id())
