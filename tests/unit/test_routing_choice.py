"""The routing rule shared by the Redis pin script and the autoscaler's trace replay."""

from __future__ import annotations

from orchestrator.routing import least_loaded


def test_fewest_sessions_wins_and_ties_go_to_the_smallest_name() -> None:
    assert least_loaded({"p-b": 1, "p-a": 1, "p-c": 0}, set()) == "p-c"
    assert least_loaded({"p-b": 1, "p-a": 1}, set()) == "p-a"


def test_draining_pods_are_skipped_even_when_emptier() -> None:
    assert least_loaded({"p-a": 0, "p-b": 5}, {"p-a"}) == "p-b"


def test_when_every_pod_drains_the_least_loaded_still_serves() -> None:
    assert least_loaded({"p-a": 3, "p-b": 2}, {"p-a", "p-b"}) == "p-b"


def test_no_pod_no_choice() -> None:
    assert least_loaded({}, set()) is None
