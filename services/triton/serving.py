"""What every MinMo adapter needs besides its model, in one object the adapter holds.

An adapter builds a :class:`ModelServing` in ``initialize()`` with its model's batched *kernel* and
hands ``execute()``'s requests to it with a function that turns one request into a *job*: a
generator that yields :class:`~services.triton.batching.Work` when it needs the model and responses
to send (see :mod:`services.triton.batching`). The serving object reads the sequence controls, keeps
the stream states, batches the work of all streams (Triton's batch for unary models, the
:class:`~services.triton.scheduler.StepScheduler` for decoupled ones), closes a stream on END (also
when the request failed), stops a generation when its stream sends STOP, counts work and batch sizes
on Triton's metrics, and turns exceptions into INVALID_ARG / INTERNAL errors.

``stream_all`` is the thread-per-stream path for a decoupled model that computes nothing itself
(the GPU profile's backbone, which waits on a TensorRT-LLM executor that batches in flight).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, Generic, TypeVar

from services.triton.batching import BatchObserver, Job, JobSteps, Kernel, run_jobs
from services.triton.device import instance_device
from services.triton.metrics import BatchMetrics, ComputeMeter
from services.triton.ordered_executor import OrderedExecutor
from services.triton.params import ModelParameters
from services.triton.requests import SequenceFlags, sequence_flags, stop_requested
from services.triton.responses import error_for, log_unexpected, send_final, stream_responses
from services.triton.scheduler import StepScheduler
from services.triton.stateful import StreamRegistry, sequence_slots

StateT = TypeVar("StateT")
MakeJob = Callable[[Any, SequenceFlags], JobSteps]
Produce = Callable[[Any, SequenceFlags, Callable[[], bool]], Iterator[Any]]

DEFAULT_MAX_STEP_BATCH = 64
DEFAULT_MAX_QUEUED_PER_STREAM = 16
CANCEL_POLL_SECONDS = 0.05


class ModelServing(Generic[StateT]):
    def __init__(self, args: dict[str, Any], *, decoupled: bool, kernel: Kernel | None = None) -> None:
        """``kernel``: the model's batched step (see :mod:`services.triton.batching`); None for a model
        that computes nothing itself and streams on worker threads (``stream_all``)."""
        import torch

        self.params = ModelParameters.from_args(args)
        self.name = self.params.model_name
        self.device = instance_device(args)  # the adapter moves its module here
        # Small models on a few CPU cores: intra-op threads cost more in synchronisation than they give.
        torch.set_num_threads(self.params.get_int("torch_threads", 1))
        self.streams: StreamRegistry[StateT] = StreamRegistry(self.params, sequence_slots=sequence_slots(args))
        self.meter = ComputeMeter(self.name)
        self._kernel = kernel
        self._observer: BatchObserver = BatchMetrics(self.name) if kernel is not None else BatchObserver()
        # Streams whose generation a client asked to stop (a STOP request; see orchestrator.triton.stream).
        # A set's add / discard / membership test are atomic under the GIL: no lock needed.
        self._stops: set[tuple[int, str]] = set()
        self._scheduler: StepScheduler | None = None
        self._executor: OrderedExecutor | None = None
        # Requests of one stream run one at a time; more than this many waiting is a client flooding its stream.
        self._max_queued = self.params.get_int("max_queued_per_stream", DEFAULT_MAX_QUEUED_PER_STREAM)
        if decoupled and kernel is not None:
            self._scheduler = StepScheduler(
                self.name,
                kernel,
                observer=self._observer,
                max_batch=self.params.get_int("max_step_batch", DEFAULT_MAX_STEP_BATCH),
                busy=self.meter.measure,
                on_error=functools.partial(log_unexpected, self.name),
            )
        elif decoupled:
            self._executor = OrderedExecutor(self.params.get_int("worker_threads", 2), self.name)

    def respond_all(self, requests: list[Any], make_job: MakeJob) -> list[Any]:
        """Unary models: all requests (one per stream, Triton's batch) go through the kernel together."""
        import triton_python_backend_utils as pb_utils

        assert self._kernel is not None, "respond_all needs ModelServing(kernel=...)"
        with self.meter.measure(requests=len(requests)):
            jobs, ends = [], []
            for request in requests:
                flags, steps = self._steps(request, make_job)
                jobs.append(Job(steps))
                ends.append(flags.stream_id if flags is not None and flags.end else None)
            sent = run_jobs(jobs, self._kernel, self._observer, max(1, len(jobs)))
            responses = []
            for job, outputs, end in zip(jobs, sent, ends, strict=True):
                if end is not None:
                    self.streams.close(end)
                if job.failure is not None:
                    log_unexpected(self.name, job.failure)
                    responses.append(pb_utils.InferenceResponse(error=error_for(job.failure)))
                elif len(outputs) != 1:
                    error = RuntimeError(f"{self.name}: a unary job must yield one response, it yielded {len(outputs)}")
                    log_unexpected(self.name, error)
                    responses.append(pb_utils.InferenceResponse(error=error_for(error)))
                else:
                    responses.append(outputs[0])
            return responses

    def schedule_all(self, requests: list[Any], make_job: MakeJob, *, free_on_cancel: bool) -> None:
        """Decoupled models with a kernel: each request joins the scheduler's steps, in order within its stream.

        ``free_on_cancel`` frees the stream's state when its request is stopped or cancelled: right for a
        per-turn stream (the turn is over), wrong for a session whose context must survive.
        """
        assert self._scheduler is not None, "schedule_all needs ModelServing(decoupled=True, kernel=...)"
        for request in requests:
            key = int(request.correlation_id())
            if stop_requested(request):
                # Marked here, on Triton's thread, so the generation sees it before its next step;
                # acknowledged in order, after that generation's FINAL. The STOP carries the id of the request
                # it stops: a request another gRPC stream sent for the same sequence (which may arrive before
                # the STOP) is not stopped by it.
                self._stops.add(_stop_key(request))
                self._scheduler.submit(key, _ScheduledRequest(self, request, self._acknowledge(request), False))
                continue
            if self._scheduler.queued(key) >= self._max_queued:
                self._refuse(request, f"stream {key} already has {self._max_queued} requests waiting: wait for them")
                continue
            _, steps = self._steps(request, make_job)
            self._scheduler.submit(key, _ScheduledRequest(self, request, steps, free_on_cancel))

    def stream_all(self, requests: list[Any], produce: Produce, *, free_on_cancel: bool) -> None:
        """Decoupled models without a kernel: each request streams on a worker thread, in order within its stream."""
        assert self._executor is not None, "stream_all needs ModelServing(decoupled=True) without a kernel"
        for request in requests:
            key = request.correlation_id()
            if stop_requested(request):
                self._stops.add(_stop_key(request))
                self._executor.submit(key, functools.partial(self._acknowledge_on_thread, request))
                continue
            self._executor.submit(key, functools.partial(self._stream, request, produce, free_on_cancel))

    def shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown()
        if self._executor is not None:
            self._executor.shutdown()
        self.streams.shutdown()

    def stopped(self, request: Any) -> bool:
        return _stop_key(request) in self._stops

    def _refuse(self, request: Any, message: str) -> None:
        """Answer ``request`` at once with UNAVAILABLE (a bound was hit: retrying later can succeed)."""
        import triton_python_backend_utils as pb_utils

        error = pb_utils.TritonError(message, pb_utils.TritonError.UNAVAILABLE)
        self.meter.count(1)
        send_final(request.get_response_sender(), pb_utils.InferenceResponse(error=error))

    def _steps(self, request: Any, make_job: MakeJob) -> tuple[SequenceFlags | None, JobSteps]:
        try:
            flags = sequence_flags(request)
        except Exception as exc:
            return None, _failing(exc)
        return flags, make_job(request, flags)

    def _acknowledge(self, request: Any) -> JobSteps:
        """The stopped generation (if any) has sent its FINAL: clear the mark; the STOP gets an empty FINAL."""
        self._stops.discard(_stop_key(request))
        return
        yield

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
        stopped = functools.partial(self.stopped, request)
        with self.meter.measure(requests=1):
            stream_responses(self.name, request, responses, on_cancel=on_cancel, stopped=stopped)

    def _acknowledge_on_thread(self, request: Any) -> None:
        self._stops.discard(_stop_key(request))
        with self.meter.measure(requests=1):
            stream_responses(self.name, request, lambda _: iter(()))


class _ScheduledRequest:
    """A decoupled request on the scheduler: its job, its response sender, and what ending it must do."""

    def __init__(self, serving: ModelServing[Any], request: Any, steps: JobSteps, free_on_cancel: bool) -> None:
        self.job = Job(steps)
        self._serving = serving
        self._request = request
        self._sender = request.get_response_sender()
        self._free_on_cancel = free_on_cancel
        self._cancel_checked = 0.0

    def cancelled(self) -> bool:
        """A STOP is seen at the next step; a cancelled gRPC call within ``CANCEL_POLL_SECONDS``.

        The STOP mark is a set lookup in this process; asking Triton whether the call was cancelled
        is a round trip to the server, which every stream paid on every step before it was rationed.
        """
        if self._serving.stopped(self._request):
            return True
        now = time.monotonic()
        if now - self._cancel_checked < CANCEL_POLL_SECONDS:
            return False
        self._cancel_checked = now
        return bool(self._sender.is_cancelled())

    def send(self, response: Any) -> None:
        self._sender.send(response)

    def finish(self, cancelled: bool) -> None:
        import triton_python_backend_utils as pb_utils

        serving = self._serving
        stream_id = int(self._request.correlation_id())
        try:
            end = sequence_flags(self._request).end
        except Exception:
            end = False
        if end or (cancelled and self._free_on_cancel):
            serving.streams.close(stream_id)
        serving.meter.count(1)
        failure = self.job.failure
        if failure is None:
            send_final(self._sender, None)
            return
        log_unexpected(serving.name, failure)
        send_final(self._sender, pb_utils.InferenceResponse(error=error_for(failure)))


def _failing(exc: BaseException) -> Generator[Any, Any, None]:
    raise exc
    yield


def _stop_key(request: Any) -> tuple[int, str]:
    """A request is named by its stream and its request id (the STOP request repeats its target's id)."""
    return int(request.correlation_id()), str(request.request_id())
