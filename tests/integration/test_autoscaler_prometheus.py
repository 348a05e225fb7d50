"""PrometheusLatency against FakePrometheus: a FAKE Prometheus HTTP API (no Prometheus runs here) on loopback
that answers ``/api/v1/query`` with canned vectors and records the PromQL it was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from orchestrator.autoscaler.demand import PrometheusLatency


class FakePrometheus:
    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)["query"][0]
                fake.queries.append(query)
                result = next((vector for needle, vector in answers.items() if needle in query), [])
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


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
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join()


def test_stage_p95_queue_time_and_sessions_are_read_for_the_pool(prometheus: FakePrometheus) -> None:
    latency = PrometheusLatency(prometheus.url).latency("demo-triton-all")
    assert dict(latency.stage_p95_seconds) == {"backbone": 0.31}  # NaN (no samples) is unknown, not 0
    assert latency.queue_seconds == 0.012
    assert latency.active_sessions == 17
    queue_query = next(q for q in prometheus.queries if "nv_inference_queue_duration_us" in q)
    assert 'pod=~"demo-triton-all-.*"' in queue_query
    assert "nv_inference_request_success" in queue_query


def test_an_unreachable_prometheus_leaves_latency_unknown() -> None:
    latency = PrometheusLatency("http://127.0.0.1:9", timeout_seconds=1).latency("demo-triton-all")
    assert (dict(latency.stage_p95_seconds), latency.queue_seconds, latency.active_sessions) == ({}, None, None)
