"""The JSON-lines span exporter and the latency metrics, without a server."""

from __future__ import annotations

import json
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from prometheus_client import REGISTRY

from orchestrator.observability.metrics import record_latencies
from orchestrator.observability.tracing import JsonLinesSpanExporter, wall_ns


def test_json_lines_exporter_writes_one_span_per_line(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("parent", attributes={"minmo.turn.sequence": 2}) as parent:
        child = tracer.start_span("child", start_time=1_000, attributes={"tokens": (1, 2)})
        child.end(end_time=2_000)
    spans = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["name"] for s in spans] == ["child", "parent"]
    child_record, parent_record = spans
    context = parent.get_span_context()
    assert parent_record["trace_id"] == format(context.trace_id, "032x") == child_record["trace_id"]
    assert parent_record["span_id"] == format(context.span_id, "016x") == child_record["parent_id"]
    assert parent_record["parent_id"] is None
    assert (child_record["start_ns"], child_record["end_ns"]) == (1_000, 2_000)
    assert parent_record["start_ns"] <= parent_record["end_ns"]
    assert parent_record["attributes"] == {"minmo.turn.sequence": 2}
    assert child_record["attributes"] == {"tokens": [1, 2]}


def test_json_lines_exporter_appends_and_stops_at_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    exporter = JsonLinesSpanExporter(path)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in ("a", "b"):
        provider.get_tracer("test").start_span(name).end()
    assert len(path.read_text().splitlines()) == 2
    exporter.shutdown()
    assert exporter.export([]) == SpanExportResult.FAILURE
    provider.get_tracer("test").start_span("c").end()
    assert len(path.read_text().splitlines()) == 2


def test_wall_ns_maps_perf_counter_to_epoch() -> None:
    before = time.time_ns()
    stamp = wall_ns(time.perf_counter())
    assert before <= stamp <= time.time_ns() + 1_000_000


def test_record_latencies_observes_measured_stages_in_seconds() -> None:
    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    first_audio = count("minmo_first_audio_latency_seconds_count")
    duplex = count("minmo_stage_latency_seconds_count", stage="duplex")
    before_sum = count("minmo_stage_latency_seconds_sum", stage="encoder")
    record_latencies({"end_of_speech_to_first_audio_ms": 600.0, "encoder_ms": 250.0, "duplex_ms": 0.0})
    assert count("minmo_first_audio_latency_seconds_count") == first_audio + 1
    assert count("minmo_stage_latency_seconds_count", stage="duplex") == duplex  # zero: not measured
    assert abs(count("minmo_stage_latency_seconds_sum", stage="encoder") - before_sum - 0.25) < 1e-9
