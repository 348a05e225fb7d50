"""Cross-stream batching: each request is a job that asks for compute; one kernel call serves all jobs.

A model adapter describes one request as a generator (a *job*): it parses its tensors, opens or
finds its stream's state, then ``yield``\\ s a :class:`Work` item whenever it needs the model and gets
the kernel's result for that item back from the ``yield``; anything else it yields is a response to
send. The model's *kernel* takes the items of many jobs (one per stream) and runs them as one batched
pass. So the adapter reads like the single-stream code it replaces, and the batching lives here:

* unary models (encoder, duplex): Triton's sequence batcher hands ``execute()`` the requests of many
  streams at once (``max_batch_size > 1``); :func:`run_jobs` drives them to their one response each,
  one kernel call per round;
* decoupled models (backbone, speech_lm, vocoder) run iteration-level batching on the
  :class:`~services.triton.scheduler.StepScheduler` thread, which advances the job of every active
  stream and calls :func:`compute` once per model step for all of them.

A kernel must be atomic (if it raises, no stream's state changed): a failed batch is then retried
one item at a time, so a stream whose item fails gets its error and the others their results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

Kernel = Callable[[list[Any]], list[Any]]
JobSteps = Generator[Any, Any, None]


@dataclass(frozen=True)
class Work:
    """What a job needs from the model for one step; the kernel's result for ``item`` is sent back."""

    item: Any


class BatchObserver:
    """Where a kernel call reports its batch size and duration (Triton metrics; nothing in unit tests)."""

    def observe(self, size: int, seconds: float) -> None:
        """Called once per kernel call that computed something."""


class Job:
    """One request's progress through its steps; advanced only by the thread that runs the kernel."""

    def __init__(self, steps: JobSteps) -> None:
        self._steps = steps
        self._reply: Any = None
        self._error: BaseException | None = None
        self._answered = False  # the parked work has its result (or its error)
        self.parked: Work | None = None  # the work this job waits for
        self.finished = False
        self.failure: BaseException | None = None  # why the job ended early (sent as its error response)

    def advance(self, send: Callable[[Any], None]) -> None:
        """Run the job until it parks on work or ends; every response it yields on the way goes to ``send``.

        A job still waiting for the result of its parked work stays parked.
        """
        if self.finished or (self.parked is not None and not self._answered):
            return
        reply, error = self._reply, self._error
        self._reply, self._error, self.parked, self._answered = None, None, None, False
        try:
            item = self._steps.throw(error) if error is not None else self._steps.send(reply)
            while not isinstance(item, Work):
                send(item)
                item = self._steps.send(None)
        except StopIteration:
            self.finished = True
            return
        except Exception as exc:  # the request's own fault or ours: it ends with this error
            self.finished = True
            self.failure = exc
            return
        self.parked = item

    def resolve(self, result: Any) -> None:
        self._reply, self._answered = result, True

    def reject(self, error: BaseException) -> None:
        """The kernel failed on this job's item: the job sees the exception where it yielded."""
        self._error, self._answered = error, True

    def close(self) -> None:
        """Abandon the job (stopped or cancelled): its ``finally`` blocks run now."""
        self._steps.close()
        self.finished = True
        self.parked = None


def compute(jobs: Sequence[Job], kernel: Kernel, observer: BatchObserver, max_batch: int) -> None:
    """Run the parked work of ``jobs`` through ``kernel`` in batches of at most ``max_batch``.

    A batch that raises is retried one item at a time, so only the items that fail alone are rejected.
    """
    for first in range(0, len(jobs), max_batch):
        batch = list(jobs[first : first + max_batch])
        try:
            results = _call(kernel, batch, observer)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].reject(exc)
            else:
                for job in batch:
                    _compute_alone(job, kernel, observer)
            continue
        for job, result in zip(batch, results, strict=True):
            job.resolve(result)


def _compute_alone(job: Job, kernel: Kernel, observer: BatchObserver) -> None:
    try:
        job.resolve(_call(kernel, [job], observer)[0])
    except Exception as exc:
        job.reject(exc)


def _call(kernel: Kernel, jobs: list[Job], observer: BatchObserver) -> list[Any]:
    items = [job.parked.item for job in jobs if job.parked is not None]
    started = time.perf_counter()
    results = kernel(items)
    observer.observe(len(items), time.perf_counter() - started)
    if len(results) != len(items):
        raise RuntimeError(f"kernel returned {len(results)} results for {len(items)} items")
    return results


def run_jobs(jobs: Sequence[Job], kernel: Kernel, observer: BatchObserver, max_batch: int) -> list[list[Any]]:
    """Drive unary jobs to their end together, one kernel call per round; returns what each job yielded."""
    sent: list[list[Any]] = [[] for _ in jobs]
    pending = list(range(len(jobs)))
    while pending:
        for index in pending:
            jobs[index].advance(sent[index].append)
        pending = [index for index in pending if not jobs[index].finished]
        if pending:
            compute([jobs[index] for index in pending], kernel, observer, max_batch)
    return sent
