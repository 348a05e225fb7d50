"""A spoken turn and an interrupted one through the traced, metered orchestrator: spans and samples."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from minmo.v1 import minmo_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.devstack.triton_launcher import TritonProcess
from orchestrator.observability.metrics import STAGES
from tests.integration.converse_client import ConverseClient, silence, speech
from tests.integration.orchestrator_fixture import running_orchestrator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STAGE_SPANS = {
    "listen",
    "respond_decision",
    "backbone.first_token",
    "speech_lm.first_tokens",
    "vocoder.first_chunk",
    "first_audio_sent",
}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape_sync(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(url: str) -> Samples:
    return await asyncio.to_thread(_scrape_sync, url)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def turn_trace(spans: list[dict[str, Any]], sequence: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``turn`` root of one assistant turn and the other spans of its trace."""
    roots = [s for s in spans if s["name"] == "turn" and s["attributes"]["minmo.turn.sequence"] == sequence]
    assert len(roots) == 1, f"one trace per turn, got {len(roots)} for turn {sequence}"
    root = roots[0]
    return root, [s for s in spans if s["trace_id"] == root["trace_id"] and s is not root]


async def test_turns_produce_spans_and_metric_samples(triton: TritonProcess, tmp_path: Path) -> None:
    trace_file = tmp_path / "spans.jsonl"
    async with running_orchestrator(triton.grpc_url, trace_file=trace_file, metrics=True) as orch:
        assert orch.metrics_url is not None
        before = await scrape(orch.metrics_url)
        client = ConverseClient(orch.channel)
        client.send(session=pb.SessionStart(config=pb.SessionConfig(max_response_tokens=20)))
        started = (await client.wait_for("session_started")).session_started
        during = await scrape(orch.metrics_url)
        assert value(during, "minmo_active_sessions") == value(before, "minmo_active_sessions") + 1

        # Turn 2: spoken, ended by the duplex model.
        client.send_audio(np.concatenate([silence(0.3), speech("Hello there. How are you?", tmp_path), silence(1.6)]))
        done = (await client.wait_for("response_done")).response_done
        assert done.status == pb.COMPLETED
        after_turn = await scrape(orch.metrics_url)
        first_audio = "minmo_first_audio_latency_seconds_count"
        assert value(after_turn, first_audio) == value(before, first_audio) + 1
        for stage in STAGES:
            count = "minmo_stage_latency_seconds_count"
            assert value(after_turn, count, stage=stage) == value(before, count, stage=stage) + 1, stage
        latency = value(after_turn, "minmo_first_audio_latency_seconds_sum") - value(
            before, "minmo_first_audio_latency_seconds_sum"
        )
        assert latency == pytest.approx(done.latencies.end_of_speech_to_first_audio_ms / 1000, rel=1e-3)

        # Turn 4: typed, cancelled by the client while it plays.
        client.send(text=pb.TextInput(text="Tell me everything you know."))
        await client.wait_for("audio_delta", count=len(client.of("audio_delta")) + 2)
        client.send(cancel=pb.CancelResponse(played_ms=480))
        cancelled = (await client.wait_for("response_done", count=2)).response_done
        assert cancelled.status == pb.INTERRUPTED
        client.send(end=pb.EndSession())
        await client.finished()
        after = await scrape(orch.metrics_url)
        interruptions = "minmo_interruptions_total"
        assert value(after, interruptions) == value(before, interruptions) + 1
        assert value(after, "minmo_active_sessions") == value(before, "minmo_active_sessions")

    spans = [json.loads(line) for line in trace_file.read_text().splitlines()]
    root, children = turn_trace(spans, done.response_id)
    assert root["parent_id"] is None
    attributes = dict(root["attributes"])
    assert 0 < attributes.pop("minmo.turn.text_tokens") <= 20
    assert attributes == {
        "minmo.session.id": started.session_id,
        "minmo.turn.sequence": done.response_id,
        "minmo.turn.audio_ms": done.played_ms,
        "minmo.turn.interrupted": False,
    }
    stages = {s["name"]: s for s in children if s["name"] in STAGE_SPANS}
    assert set(stages) == STAGE_SPANS
    for span in stages.values():
        assert span["parent_id"] == root["span_id"]
        assert root["start_ns"] <= span["start_ns"] <= span["end_ns"] <= root["end_ns"], span["name"]
    assert stages["listen"]["attributes"]["encoder_ms"] == pytest.approx(done.latencies.encoder_ms)
    order = ["backbone.first_token", "speech_lm.first_tokens", "vocoder.first_chunk", "first_audio_sent"]
    assert [stages[n]["start_ns"] for n in order] == sorted(stages[n]["start_ns"] for n in order)
    vocoder = stages["vocoder.first_chunk"]["attributes"]["since_response_start_ms"]
    assert vocoder == pytest.approx(done.latencies.first_audio_ms)

    cut_root, cut_children = turn_trace(spans, cancelled.response_id)
    assert cut_root["attributes"]["minmo.turn.interrupted"] is True
    assert cut_root["attributes"]["minmo.turn.audio_ms"] == 480
    assert {"listen", "respond_decision", "backbone.first_token"} <= {s["name"] for s in cut_children}


async def test_failed_calls_are_counted_by_status_code(triton: TritonProcess) -> None:
    async with running_orchestrator(triton.grpc_url, metrics=True) as orch:
        assert orch.metrics_url is not None
        before = await scrape(orch.metrics_url)
        client = ConverseClient(orch.channel)
        client.send(session=pb.SessionStart(resume_token="unknown-token"))
        await client.close()
        assert client.error is not None and client.error.code().name == "NOT_FOUND"
        after = await scrape(orch.metrics_url)
    name = "minmo_errors_total"
    assert value(after, name, code="NOT_FOUND") == value(before, name, code="NOT_FOUND") + 1
