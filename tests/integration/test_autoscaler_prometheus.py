"""PrometheusLatency against FakePrometheus (a FAKE Prometheus HTTP API: no Prometheus runs here) and against a
SilentServer (a real listener that never answers: a hung Prometheus)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

import pytest

from orchestrator.autoscaler.demand import PrometheusLatency, pods_of
from tests.integration.fake_prometheus import FakePrometheus
from tests.integration.silent_server import SilentServer


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus(
        {
            "minmo_stage_latency_seconds_bucket": [
                {"metric": {"stage": "backbone"}, "value": [0, "0.31"]},
                {"metric": {"stage": "vocoder"}, "value": [0, "NaN"]},
            ],
            "nv_inference_queue_duration_us": [{"metric": {}, "value": [0, "0.012"]}],
            "minmo_active_sessions": [{"metric": {}, "value": [0, "17"]}],
        }
    )
    with fake.running():
        yield fake


def selectors(query: str) -> list[str]:
    """The label matchers of every metric in a query (a matcher's regex has braces of its own)."""
    return re.findall(r'\{((?:[a-z_]+=~?"(?:[^"\\]|\\.)*",?)+)\}', query)


def test_stage_p95_queue_time_and_sessions_are_read_for_the_pool(prometheus: FakePrometheus) -> None:
    latency = PrometheusLatency(prometheus.url, "voice", "minmo-serve-orchestrator").latency("minmo-serve-triton-all")
    assert dict(latency.stage_p95_seconds) == {"backbone": 0.31}  # NaN (no samples) is unknown, not 0
    assert latency.queue_seconds == 0.012
    assert latency.active_sessions == 17
    queue_query = next(q for q in prometheus.queries if "nv_inference_queue_duration_us" in q)
    assert "nv_inference_request_success" in queue_query


def test_every_query_is_scoped_to_the_release_namespace_and_its_own_pods(prometheus: FakePrometheus) -> None:
    """Another release (or a staging copy in another namespace) exporting the same metrics must not size this one."""
    PrometheusLatency(prometheus.url, "voice", "minmo-serve-orchestrator").latency("minmo-serve-triton-all")
    assert len(prometheus.queries) == 3
    orchestrators = 'namespace="voice",pod=~"minmo-serve-orchestrator-[a-z0-9]{1,10}-[a-z0-9]{5}"'
    pool = 'namespace="voice",pod=~"minmo-serve-triton-all-[a-z0-9]{1,10}-[a-z0-9]{5}"'
    for query in prometheus.queries:
        assert selectors(query), f"unscoped: {query}"
        expected = pool if "nv_inference" in query else orchestrators
        assert all(found == expected for found in selectors(query)), query


def test_the_pod_regex_takes_exactly_one_deployments_pods() -> None:
    """Prometheus anchors regex matchers; pool `all` must not take the pods of pool `all-big` or of a Service."""
    pattern = re.compile(pods_of("minmo-serve-triton-all"))
    assert pattern.fullmatch("minmo-serve-triton-all-7d9f8c6b5-x2vqz")
    assert not pattern.fullmatch("minmo-serve-triton-all-big-7d9f8c6b5-x2vqz")
    assert not pattern.fullmatch("minmo-serve-triton-all")
    assert not pattern.fullmatch("other-minmo-serve-triton-all-7d9f8c6b5-x2vqz")


def test_an_unreachable_prometheus_leaves_latency_unknown() -> None:
    latency = PrometheusLatency("http://127.0.0.1:9", "voice", timeout_seconds=1).latency("demo-triton-all")
    assert (dict(latency.stage_p95_seconds), latency.queue_seconds, latency.active_sessions) == ({}, None, None)


def test_a_hung_prometheus_costs_one_timeout_then_is_skipped_for_the_back_off(caplog: pytest.LogCaptureFixture) -> None:
    """Three queries per pool per round against a Prometheus that never answers: one timeout, not three per pool."""
    now = [0.0]
    with SilentServer().running() as silent:
        source = PrometheusLatency(
            f"http://{silent.address}", "voice", timeout_seconds=0.5, backoff_seconds=30, clock=lambda: now[0]
        )
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            first = source.latency("demo-triton-all")
            second = source.latency("demo-triton-other")
        elapsed = time.monotonic() - started
        assert (first.queue_seconds, second.active_sessions) == (None, None)
        assert 0.4 < elapsed < 2.0, elapsed
        assert len(silent.connections) == 1
        assert "sizing from sessions only for 30 s" in caplog.text
        now[0] = 31.0  # the back-off is over: Prometheus is asked again
        source.latency("demo-triton-all")
        assert len(silent.connections) == 2
