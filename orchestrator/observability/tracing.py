"""OpenTelemetry tracing of one orchestrator process.

``configure_tracing`` installs the SDK's tracer provider once per process with the exporters the
settings ask for; without it every tracer is OpenTelemetry's no-op one, so untraced processes pay
nothing. Stage spans are written after the fact with explicit timestamps from the timings the
session measures anyway, so tracing adds no work to the audio path.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc.aio
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult

TRACER_NAME = "minmo.orchestrator"
SERVICE_NAME = "minmo-orchestrator"

_provider: TracerProvider | None = None
_lock = threading.Lock()


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as the JSON-lines exporter writes it (ids in W3C hex, times in ns since the epoch)."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent is not None else None,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "attributes": dict(span.attributes or {}),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends one JSON object per finished span to a file: a trace viewer for development."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._closed:
            return SpanExportResult.FAILURE
        text = "".join(json.dumps(span_record(span), default=str) + "\n" for span in spans)
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(text)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._closed = True


@dataclass
class Tracing:
    """What ``configure_tracing`` added to the process's provider; ``close`` flushes and stops it."""

    provider: TracerProvider
    processors: list[SpanProcessor] = field(default_factory=list)

    def close(self) -> None:
        for processor in self.processors:
            processor.force_flush()
            processor.shutdown()


def configure_tracing(trace_file: Path | None = None, otlp_endpoint: str | None = None) -> Tracing | None:
    """Export this process's spans to a JSON-lines file and/or an OTLP gRPC collector; None: tracing stays off.

    The provider, its resource and the Redis auto-instrumentation are set up by the first call;
    later calls (tests) add their exporters to the same provider, as OpenTelemetry allows only one.
    """
    if trace_file is None and not otlp_endpoint:
        return None
    global _provider
    with _lock:
        if _provider is None:
            _provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
            trace.set_tracer_provider(_provider)
            from opentelemetry.instrumentation.redis import RedisInstrumentor

            RedisInstrumentor().instrument(tracer_provider=_provider)
        tracing = Tracing(_provider)
        if trace_file is not None:
            # Synchronous: spans reach the file when they end (small writes; development only).
            tracing.processors.append(SimpleSpanProcessor(JsonLinesSpanExporter(trace_file)))
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            tracing.processors.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
        for processor in tracing.processors:
            _provider.add_span_processor(processor)
        return tracing


def server_interceptors(tracing: Tracing | None) -> list[grpc.aio.ServerInterceptor]:
    """The gRPC server's span per call (opentelemetry-instrumentation-grpc), when tracing is on."""
    if tracing is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=tracing.provider)]


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def trace_headers() -> dict[str, str]:
    """W3C ``traceparent`` (and ``tracestate``) of the current span, as gRPC metadata; empty when none."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def wall_ns(perf_counter_at: float) -> int:
    """A ``time.perf_counter()`` instant as nanoseconds since the epoch (what spans are stamped with)."""
    return time.time_ns() - int((time.perf_counter() - perf_counter_at) * 1e9)


def stage_span(parent: trace.Span, name: str, start_ns: int, end_ns: int, **attributes: Any) -> None:
    """A finished child span of ``parent`` from recorded times (end never before start)."""
    span = tracer().start_span(
        name, context=trace.set_span_in_context(parent), start_time=start_ns, attributes=attributes or None
    )
    span.end(end_time=max(start_ns, end_ns))
