"""Per-stage breakdown of assistant turns from the orchestrator's trace file (JSON lines).

Each assistant turn is one trace: a ``turn`` root with the stage spans ``listen``,
``respond_decision``, ``backbone.first_token``, ``speech_lm.first_tokens``, ``vocoder.first_chunk``
and ``first_audio_sent`` (see ``orchestrator.converse.turns``). The first five answer "where did
the time go between the respond decision and the first audio byte"; ``listen`` carries the listen
path's model time over the user turn as attributes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

SPEAK_STAGES = (
    "respond_decision",
    "backbone.first_token",
    "speech_lm.first_tokens",
    "vocoder.first_chunk",
    "first_audio_sent",
)
LISTEN_ATTRIBUTES = ("encoder_ms", "backbone_prefill_ms", "duplex_ms")


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def turn_breakdowns(spans: list[dict[str, Any]], start_ns: int, end_ns: int) -> list[dict[str, float]]:
    """One dict per turn whose root started in [start_ns, end_ns): stage -> ms (decision to first audio)."""
    roots = {s["trace_id"]: s for s in spans if s["name"] == "turn" and start_ns <= s["start_ns"] < end_ns}
    by_trace: dict[str, dict[str, float]] = defaultdict(dict)
    for span in spans:
        row = by_trace[span["trace_id"]] if span["trace_id"] in roots else None
        if row is None:
            continue
        if span["name"] in SPEAK_STAGES:
            row[span["name"]] = (span["end_ns"] - span["start_ns"]) / 1e6
        elif span["name"] == "listen":
            for key in LISTEN_ATTRIBUTES:
                row[f"listen.{key}"] = float(span["attributes"].get(key, 0.0))
    return [by_trace[trace_id] for trace_id in roots if by_trace.get(trace_id)]


def mean_breakdown(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean per stage over the turns that reached it (an interrupted turn may stop before the vocoder)."""
    keys = [*SPEAK_STAGES, *(f"listen.{k}" for k in LISTEN_ATTRIBUTES)]
    return {key: float(np.mean([r[key] for r in rows if key in r])) for key in keys if any(key in r for r in rows)}
