"""The Triton pods' preStop wait (services/triton/drain_wait.py) on a scripted clock and scripted metrics."""

from __future__ import annotations

from collections.abc import Iterator

from services.triton.drain_wait import Activity, parse_activity, wait_until_quiet

METRICS = """# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="encoder",version="1"} 120
nv_inference_request_success{model="vocoder",version="1"} 30
nv_inference_request_failure{model="vocoder",reason="BACKEND",version="1"} 2
nv_inference_pending_request_count{model="backbone",version="1"} 1
nv_inference_count{model="encoder",version="1"} 999
minmo_open_streams{model="backbone"} 4
"""


def test_metrics_are_summed_over_every_model() -> None:
    assert parse_activity(METRICS) == Activity(completed=152.0, pending=1.0)
    assert parse_activity("") == Activity(0.0, 0.0)


class Script:
    """A clock that advances only when the wait sleeps, and an activity per poll."""

    def __init__(self, activities: Iterator[Activity | None]) -> None:
        self.now = 0.0
        self.activities = activities

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def read(self) -> Activity | None:
        return next(self.activities)


def run(script: Script, min_seconds: float = 10, quiet_seconds: float = 5, max_seconds: float = 60) -> str:
    return wait_until_quiet(
        script.read,
        min_seconds=min_seconds,
        quiet_seconds=quiet_seconds,
        max_seconds=max_seconds,
        clock=script.clock,
        sleep=script.sleep,
    )


def forever(activity: Activity) -> Iterator[Activity]:
    while True:
        yield activity


def test_an_idle_pod_waits_only_the_minimum() -> None:
    script = Script(forever(Activity(100, 0)))
    assert "no request for 5 s after 10 s" in run(script)
    assert script.now == 10.0


def test_a_pod_with_a_turn_in_flight_waits_until_it_is_over() -> None:
    """Requests complete every poll for 20 s (a turn streaming audio), then nothing: quiet 5 s later."""

    def turn() -> Iterator[Activity]:
        completed = 0
        for _ in range(40):  # 20 s at 0.5 s a poll
            completed += 3
            yield Activity(completed, 0)
        yield from forever(Activity(completed, 0))

    script = Script(turn())
    assert "the turns in flight are over" in run(script)
    assert 24.5 <= script.now <= 26.0


def test_a_pending_request_counts_as_activity_though_nothing_completes() -> None:
    def long_generation() -> Iterator[Activity]:
        for _ in range(30):
            yield Activity(50, 1)
        yield from forever(Activity(50, 0))

    script = Script(long_generation())
    run(script)
    assert script.now >= 15 + 5 - 0.5


def test_a_pod_that_never_goes_quiet_stops_at_the_bound() -> None:
    def busy() -> Iterator[Activity]:
        completed = 0
        while True:
            completed += 1
            yield Activity(completed, 0)

    script = Script(busy())
    assert "still busy after 60 s" in run(script)
    assert script.now == 60.0


def test_unreadable_metrics_end_the_wait_at_once() -> None:
    """Triton is already gone (or never came up): there is nothing left to let finish."""
    script = Script(iter([None]))
    assert "do not answer" in run(script)
    assert script.now == 0.0
