"""Cross-stream batching without Triton: jobs park on work, one kernel call serves all, failures stay local.

``services.triton.batching`` and ``services.triton.scheduler`` import nothing of Triton; the
requests here are plain recording objects implementing the scheduler's ``Scheduled`` protocol
(what ``ModelServing`` builds around a real Triton request). The real server runs the same code in
``tests/integration/test_batching.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from contextlib import nullcontext
from typing import Any

import pytest

from services.triton.batching import BatchObserver, Job, Work, compute, run_jobs
from services.triton.scheduler import StepScheduler


class RecordingObserver(BatchObserver):
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def observe(self, size: int, seconds: float) -> None:
        self.sizes.append(size)


def doubling_kernel(calls: list[list[Any]]) -> Any:
    """A kernel that doubles numbers and refuses the item 'bad' (failing the whole batch it is in)."""

    def kernel(items: list[Any]) -> list[Any]:
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [2 * item for item in items]

    return kernel


def counting_job(name: str, steps: int, log: list[Any]) -> Generator[Any, Any, None]:
    total = 0
    for step in range(steps):
        total += yield Work(step + 1)
        log.append((name, step))
        yield f"{name}:{total}"


def test_unary_jobs_share_one_kernel_call_per_round_and_get_their_own_results() -> None:
    calls: list[list[Any]] = []
    observer = RecordingObserver()
    log: list[Any] = []
    jobs = [Job(counting_job(name, steps, log)) for name, steps in (("a", 1), ("b", 3), ("c", 2))]
    sent = run_jobs(jobs, doubling_kernel(calls), observer, max_batch=8)
    assert calls == [[1, 1, 1], [2, 2], [3]]  # a job that ended leaves the next rounds
    assert observer.sizes == [3, 2, 1]
    assert sent == [["a:2"], ["b:2", "b:6", "b:12"], ["c:2", "c:6"]]
    assert all(job.finished and job.failure is None for job in jobs)


def test_a_failing_item_fails_only_its_own_job() -> None:
    calls: list[list[Any]] = []

    def job(item: Any) -> Generator[Any, Any, None]:
        result = yield Work(item)
        yield result

    jobs = [Job(job(1)), Job(job("bad")), Job(job(3))]
    sent = run_jobs(jobs, doubling_kernel(calls), RecordingObserver(), max_batch=8)
    assert calls == [[1, "bad", 3], [1], ["bad"], [3]]  # the batch, then each item alone
    assert sent == [[2], [], [6]]
    assert isinstance(jobs[1].failure, ValueError) and jobs[0].failure is None and jobs[2].failure is None


def test_a_job_may_handle_its_kernel_error_and_go_on() -> None:
    def forgiving() -> Generator[Any, Any, None]:
        try:
            yield Work("bad")
        except ValueError:
            yield "recovered"

    jobs = [Job(forgiving())]
    assert run_jobs(jobs, doubling_kernel([]), RecordingObserver(), max_batch=8) == [["recovered"]]
    assert jobs[0].failure is None


def test_batches_are_capped_and_a_bad_parse_fails_before_any_work() -> None:
    calls: list[list[Any]] = []

    def refusing() -> Generator[Any, Any, None]:
        raise ValueError("input X is malformed")
        yield

    jobs = [Job(counting_job(str(i), 1, [])) for i in range(5)] + [Job(refusing())]
    run_jobs(jobs, doubling_kernel(calls), RecordingObserver(), max_batch=2)
    assert calls == [[1, 1], [1, 1], [1]]
    assert str(jobs[-1].failure) == "input X is malformed"


def test_a_parked_job_without_its_result_stays_parked() -> None:
    job = Job(counting_job("a", 2, []))
    job.advance(lambda _: None)
    parked = job.parked
    job.advance(lambda _: None)  # no result yet: nothing moves
    assert job.parked is parked and not job.finished
    compute([job], doubling_kernel([]), RecordingObserver(), max_batch=4)
    sent: list[Any] = []
    job.advance(sent.append)
    assert sent == ["a:2"] and job.parked is not None and job.parked.item == 2


class RecordingRequest:
    """A scheduled request that records what the scheduler did with it (the ``Scheduled`` protocol)."""

    def __init__(self, steps: Generator[Any, Any, None]) -> None:
        self.job = Job(steps)
        self.sent: list[Any] = []
        self.stop = threading.Event()
        self.done = threading.Event()
        self.ended: tuple[bool, BaseException | None] | None = None

    def cancelled(self) -> bool:
        return self.stop.is_set()

    def send(self, response: Any) -> None:
        self.sent.append(response)

    def finish(self, cancelled: bool) -> None:
        self.ended = (cancelled, self.job.failure)
        self.done.set()


def scheduler(kernel: Any, observer: BatchObserver, errors: list[BaseException]) -> StepScheduler:
    return StepScheduler("test", kernel, observer=observer, max_batch=8, busy=nullcontext, on_error=errors.append)


def test_the_scheduler_steps_streams_together_and_keeps_each_stream_in_order() -> None:
    calls: list[list[Any]] = []
    observer = RecordingObserver()
    errors: list[BaseException] = []
    log: list[Any] = []
    run = scheduler(doubling_kernel(calls), observer, errors)
    first_a = RecordingRequest(counting_job("a1", 3, log))
    second_a = RecordingRequest(counting_job("a2", 1, log))
    only_b = RecordingRequest(counting_job("b", 3, log))
    run.submit("A", first_a)
    run.submit("A", second_a)
    run.submit("B", only_b)
    for request in (first_a, second_a, only_b):
        assert request.done.wait(5)
    run.shutdown()
    assert (
        first_a.sent == ["a1:2", "a1:6", "a1:12"]
        and second_a.sent == ["a2:2"]
        and only_b.sent == ["b:2", "b:6", "b:12"]
    )
    # a2 starts only after a1 ended, then shares a step with what is left of b.
    assert log.index(("a2", 0)) > log.index(("a1", 2))
    assert max(observer.sizes) == 2 and errors == []
    assert first_a.ended == (False, None)


def test_a_stopped_request_ends_at_its_next_step_and_the_other_stream_goes_on() -> None:
    closed = threading.Event()

    def endless(name: str) -> Generator[Any, Any, None]:
        try:
            while True:
                yield f"{name}:{(yield Work(1))}"
                time.sleep(0.005)
        finally:
            closed.set()

    errors: list[BaseException] = []
    run = scheduler(doubling_kernel([]), RecordingObserver(), errors)
    stopped, other = RecordingRequest(endless("s")), RecordingRequest(counting_job("o", 4, []))
    run.submit(1, stopped)
    run.submit(2, other)
    deadline = time.monotonic() + 5
    while not stopped.sent and time.monotonic() < deadline:
        time.sleep(0.001)
    stopped.stop.set()
    assert stopped.done.wait(5) and other.done.wait(5)
    run.shutdown()
    assert stopped.ended == (True, None) and closed.is_set()  # its finally ran: the adapter's clean-up
    assert stopped.sent and all(response == "s:2" for response in stopped.sent)
    assert other.sent == ["o:2", "o:6", "o:12", "o:20"] and other.ended == (False, None)


def test_a_failing_stream_gets_its_error_and_the_others_their_results() -> None:
    def job(item: Any, steps: int) -> Generator[Any, Any, None]:
        for _ in range(steps):
            yield (yield Work(item))

    errors: list[BaseException] = []
    run = scheduler(doubling_kernel([]), RecordingObserver(), errors)
    good, bad = RecordingRequest(job(5, 3)), RecordingRequest(job("bad", 3))
    run.submit("good", good)
    run.submit("bad", bad)
    assert good.done.wait(5) and bad.done.wait(5)
    run.shutdown()
    assert good.sent == [10, 10, 10] and good.ended == (False, None)
    assert bad.sent == [] and bad.ended is not None and isinstance(bad.ended[1], ValueError)
    assert errors == []  # a request's failure is its own, not the scheduler's


def test_a_request_that_joins_later_joins_the_running_steps() -> None:
    gate = threading.Event()
    calls: list[list[Any]] = []

    def slow_kernel(items: list[Any]) -> list[Any]:
        calls.append(list(items))
        gate.wait(5)
        time.sleep(0.01)
        return [2 * item for item in items]

    run = scheduler(slow_kernel, RecordingObserver(), [])
    early = RecordingRequest(counting_job("early", 6, []))
    run.submit("early", early)
    late = RecordingRequest(counting_job("late", 2, []))
    run.submit("late", late)
    gate.set()
    assert early.done.wait(5) and late.done.wait(5)
    run.shutdown()
    assert early.sent == ["early:2", "early:6", "early:12", "early:20", "early:30", "early:42"]
    assert late.sent == ["late:2", "late:6"]
    assert any(len(items) == 2 for items in calls)


def test_submit_after_shutdown_is_refused() -> None:
    run = scheduler(doubling_kernel([]), RecordingObserver(), [])
    run.shutdown()
    with pytest.raises(RuntimeError, match="shutting down"):
        run.submit("x", RecordingRequest(counting_job("x", 1, [])))
