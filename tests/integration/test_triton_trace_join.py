"""Triton's own spans join the orchestrator's per-turn trace through the W3C traceparent."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from minmo.v1 import minmo_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from orchestrator.devstack.triton_launcher import (
    TritonPorts,
    free_port,
    start_triton,
    tracing_args,
    wait_until_ready,
)
from tests.conftest import REPO_ROOT
from tests.integration.converse_client import ConverseClient
from tests.integration.orchestrator_fixture import running_orchestrator

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class OtlpHttpReceiver:
    """A minimal OTLP/HTTP trace receiver on loopback, standing in for a collector."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []  # (trace id hex, span name)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()
                if "json" in self.headers.get("Content-Type", ""):  # OTLP/JSON: ids are hex strings
                    document = json.loads(body)
                    for resource in document.get("resourceSpans", []):
                        for scope in resource.get("scopeSpans", []):
                            receiver.spans.extend((s["traceId"].lower(), s["name"]) for s in scope.get("spans", []))
                    return
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        receiver.spans.extend((s.trace_id.hex(), s.name) for s in scope.spans)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[OtlpHttpReceiver]:
    receiver = OtlpHttpReceiver()
    yield receiver
    receiver.server.shutdown()


async def test_triton_spans_continue_the_turn_trace(
    smoke_weights: Path, tmp_path: Path, receiver: OtlpHttpReceiver
) -> None:
    ports = TritonPorts(free_port(), free_port(), free_port())
    triton = start_triton(
        REPO_ROOT / "model_repository", smoke_weights, tmp_path / "triton", ports, extra_args=tracing_args(receiver.url)
    )
    trace_file = tmp_path / "spans.jsonl"
    try:
        wait_until_ready(triton)
        async with running_orchestrator(triton.grpc_url, trace_file=trace_file) as orch:
            client = ConverseClient(orch.channel)
            client.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=5)))
            await client.wait_for("session_started")
            client.send(text=pb.TextInput(text="hello"))
            await client.wait_for("response_done")
            await client.close()
        turn = next(json.loads(line) for line in trace_file.read_text().splitlines() if '"turn"' in line)
        for _ in range(50):  # Triton exports in batches every 500 ms
            if any(trace_id == turn["trace_id"] for trace_id, _ in receiver.spans):
                break
            await asyncio.sleep(0.2)
    finally:
        triton.stop()
    joined = {name for trace_id, name in receiver.spans if trace_id == turn["trace_id"]}
    assert joined, f"no Triton span in trace {turn['trace_id']}; received {receiver.spans[:6]}"
    # The speak path's models (backbone, speech_lm, vocoder) report their spans into the turn's trace.
    assert joined & {"backbone", "speech_lm", "vocoder"}, joined
