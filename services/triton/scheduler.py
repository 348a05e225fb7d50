"""Iteration-level (continuous) batching for a decoupled model: one thread steps every live stream together.

``execute()`` only queues each request behind the earlier requests of its stream and returns, so
Triton can hand over the next request at once (another stream's prefill, a STOP). One scheduler
thread per model instance then loops: it advances the job at the head of every stream's queue until
the job parks on :class:`~services.triton.batching.Work` or ends, and runs all parked work through the
model's kernel in one call. A generation advances one token per step beside all the others; a request
of another stream joins at the next step; a request that ends, is stopped, is cancelled or fails
leaves the batch without touching the other streams' state. Requests of one stream still run one at
a time and in order, which is what the stream's state (a KV cache, overlap caches) needs.

One thread suffices: the kernel is where the time goes, and a batched kernel uses the cores better
than several threads each running one stream (Triton's instances and ``torch_threads`` scale it).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from services.triton.batching import BatchObserver, Job, Kernel, compute


class Scheduled(Protocol):
    """One queued request as the scheduler sees it; :class:`~services.triton.serving.ModelServing` makes them."""

    job: Job

    def cancelled(self) -> bool:
        """The client cancelled the call or STOPped this request: end it before its next step."""
        ...

    def send(self, response: Any) -> None: ...

    def finish(self, cancelled: bool) -> None:
        """Send the FINAL flag (with the job's error, if it failed) and release what the request held."""
        ...


class StepScheduler:
    def __init__(
        self,
        name: str,
        kernel: Kernel,
        *,
        observer: BatchObserver,
        max_batch: int,
        busy: Callable[[], AbstractContextManager[Any]],
        on_error: Callable[[BaseException], None],
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._kernel = kernel
        self._observer = observer
        self._max_batch = max_batch
        self._busy = busy
        self._on_error = on_error
        self._queues: dict[Hashable, deque[Scheduled]] = {}
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=f"{name}-scheduler", daemon=True)
        self._thread.start()

    def submit(self, stream: Hashable, request: Scheduled) -> None:
        """Queue ``request`` behind the earlier requests of ``stream``; it joins the next step once it leads."""
        with self._cond:
            if self._closing:
                raise RuntimeError("the model is shutting down")
            self._queues.setdefault(stream, deque()).append(request)
            self._cond.notify()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Finish the queued requests, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def active_streams(self) -> int:
        with self._cond:
            return len(self._queues)

    def queued(self, stream: Hashable) -> int:
        """Requests of ``stream`` waiting or running."""
        with self._cond:
            queue = self._queues.get(stream)
            return 0 if queue is None else len(queue)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queues and not self._closing:
                    self._cond.wait()
                if not self._queues:
                    return
                heads = [(stream, queue[0]) for stream, queue in self._queues.items()]
            try:
                self._step(heads)
            except Exception as exc:  # a bug of ours: report it, keep serving the other streams
                self._on_error(exc)

    def _step(self, heads: list[tuple[Hashable, Scheduled]]) -> None:
        parked = []
        with self._busy():
            for stream, request in heads:
                job = request.job
                try:
                    if request.cancelled():
                        job.close()
                        self._retire(stream, request, cancelled=True)
                        continue
                    job.advance(request.send)
                    if job.finished:
                        self._retire(stream, request, cancelled=False)
                    elif job.parked is not None:
                        parked.append(job)
                except Exception as exc:
                    self._on_error(exc)
                    job.close()
                    self._retire(stream, request, cancelled=False)
            if parked:
                compute(parked, self._kernel, self._observer, self._max_batch)

    def _retire(self, stream: Hashable, request: Scheduled, *, cancelled: bool) -> None:
        try:
            request.finish(cancelled)
        finally:
            with self._cond:
                queue = self._queues[stream]
                queue.popleft()
                if not queue:
                    del self._queues[stream]
