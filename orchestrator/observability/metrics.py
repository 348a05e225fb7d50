"""The orchestrator's Prometheus metrics, served on ``minmo serve --metrics-port``.

Module-level collectors in the default registry: one set per process, as Prometheus expects.
Latencies are in seconds, counters end in ``_total`` (the client library appends it).
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Voice latencies live between tens of milliseconds and a few seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
STAGES = ("encoder", "backbone_prefill", "duplex", "first_token", "first_speech_token", "first_audio")

FIRST_AUDIO = Histogram(
    "minmo_first_audio_latency_seconds",
    "End of the user's speech to the first audio of the answer sent to the client",
    buckets=LATENCY_BUCKETS,
)
STAGE_LATENCY = Histogram(
    "minmo_stage_latency_seconds",
    "Per-turn time in one stage: the listen path's stages summed over the user turn (encoder, "
    "backbone_prefill, duplex); first_token, first_speech_token, first_audio since the response started",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
AUDIO_UNDERRUNS = Counter(
    "minmo_audio_underruns_total", "Audio chunks sent after the client had played everything sent before"
)
ACTIVE_SESSIONS = Gauge("minmo_active_sessions", "Converse sessions being served by this process")
INTERRUPTIONS = Counter("minmo_interruptions_total", "Responses interrupted (barge-in or client cancel)")
ERRORS = Counter(
    "minmo_errors_total", "Errors sent to clients (error events and failed calls), by gRPC status code", ["code"]
)
SPECULATION = Counter(
    "minmo_speculation_total",
    "Speculative responses (started on a likely end of turn, held until the decision), by outcome: "
    "started, committed (the decision came), discarded (the user went on, or the hold timed out)",
    ["outcome"],
)
SPECULATION_HELD_AUDIO = Histogram(
    "minmo_speculation_held_audio_seconds",
    "Audio a committed speculation held ready at the decision (sent at once)",
    buckets=(0.0, 0.2, 0.4, 0.6, 1.2, 1.8, 2.4, 3.6, 6.0),
)
SPECULATION_LEAD = Histogram(
    "minmo_speculation_lead_seconds",
    "How long before the decision a committed speculation started",
    buckets=LATENCY_BUCKETS,
)
SPECULATION_DISCARDED_WORK = Counter(
    "minmo_speculation_discarded_work_total",
    "Work of discarded speculations: text_tokens, speech_tokens, audio_seconds",
    ["kind"],
)


def record_latencies(latencies_ms: dict[str, float]) -> None:
    """One finished response: the ``ResponseDone`` latencies (ms); unmeasured (zero) ones are skipped."""
    first_audio = latencies_ms.get("end_of_speech_to_first_audio_ms", 0.0)
    if first_audio > 0:
        FIRST_AUDIO.observe(first_audio / 1000)
    for stage in STAGES:
        value = latencies_ms.get(f"{stage}_ms", 0.0)
        if value > 0:
            STAGE_LATENCY.labels(stage=stage).observe(value / 1000)


class MetricsServer:
    """The ``/metrics`` HTTP endpoint, on a daemon thread of its own."""

    def __init__(self, port: int, host: str = "0.0.0.0") -> None:
        server, thread = start_http_server(port, host)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.port = server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
