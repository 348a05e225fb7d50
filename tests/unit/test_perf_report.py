"""The load sweep's read-outs: span breakdown per turn, the goals verdict and the rendered table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from perf import report, spans
from perf.load import goals, summarize
from perf.scenario import TurnResult

MS = 1_000_000


def _span(name: str, trace: str, start_ms: float, end_ms: float, **attributes: float) -> dict[str, Any]:
    return {
        "name": name,
        "trace_id": trace,
        "span_id": f"{name}-{trace}",
        "parent_id": None,
        "start_ns": int(start_ms * MS),
        "end_ns": int(end_ms * MS),
        "attributes": attributes,
    }


def _trace(trace: str, at_ms: float, vocoder_ms: float) -> list[dict[str, Any]]:
    return [
        _span("turn", trace, at_ms, at_ms + 1000),
        _span("listen", trace, at_ms, at_ms + 800, encoder_ms=40.0, backbone_prefill_ms=20.0, duplex_ms=10.0),
        _span("respond_decision", trace, at_ms + 800, at_ms + 810),
        _span("backbone.first_token", trace, at_ms + 800, at_ms + 820),
        _span("speech_lm.first_tokens", trace, at_ms + 820, at_ms + 850),
        _span("vocoder.first_chunk", trace, at_ms + 850, at_ms + 850 + vocoder_ms),
        _span("first_audio_sent", trace, at_ms + 950, at_ms + 952),
    ]


def test_breakdown_keeps_only_the_window_and_averages_per_stage(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    records = _trace("a", 1000, 100) + _trace("b", 3000, 60) + _trace("late", 9000, 500)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = spans.turn_breakdowns(spans.read_spans(path), start_ns=0, end_ns=5000 * MS)
    assert len(rows) == 2
    mean = spans.mean_breakdown(rows)
    assert mean["vocoder.first_chunk"] == 80.0
    assert mean["backbone.first_token"] == 20.0
    assert mean["listen.encoder_ms"] == 40.0
    assert spans.read_spans(tmp_path / "missing.jsonl") == []


def _turn(ttfa_s: float, arrivals: list[float]) -> TurnResult:
    turn = TurnResult(end_of_speech=10.0)
    turn.arrivals = [10.0 + ttfa_s + a for a in arrivals]
    turn.samples = [14_400] * len(arrivals)  # 600 ms chunks
    return turn


def test_summary_counts_an_underrun_when_a_chunk_is_late() -> None:
    on_time = _turn(0.8, [0.0, 0.3, 0.9])
    late = _turn(0.9, [0.0, 1.0])  # the second chunk arrives 400 ms after the first one finished playing
    summary = summarize([on_time, late])
    assert summary["answered"] == 2
    assert summary["underruns"] == 1
    assert round(summary["ttfa_ms"]["p50"]) == 850


def _level(n: int, realtime: bool, ratio: float, underruns: int = 0) -> dict[str, Any]:
    answers = summarize([_turn(0.8, [0.0, 0.3])])
    answers["underruns"] = underruns
    return {
        "n": n,
        "realtime": realtime,
        "ttfa_ratio_orchestrated_over_direct": ratio,
        "first_answer": answers,
        "all_answers": answers,
        "direct": answers,
        "barge_in_to_last_audio_ms": {"p50": 250.0},
        "orchestrator": {"cpu_cores": 0.1, "rss_mb_per_session": 100.0},
        "redis_commands_per_turn": 10.0,
        "redis_commands_per_session_minute": 30.0,
        "span_breakdown_ms": {"respond_decision": 10.0, "vocoder.first_chunk": 100.0},
        "traced_turns": 2,
        "triton": [{"model": "encoder", "requests": 3, "queue_ms": 1.0, "execute_ms": 2.0, "work_ms": 2.5}],
    }


def test_goals_take_the_last_real_time_level_before_the_first_failure() -> None:
    levels = [_level(1, True, 1.05), _level(2, True, 1.30), _level(4, False, 2.0, underruns=3)]
    verdict = goals(levels)
    assert verdict["largest_realtime_n"] == 2
    assert verdict["ratio_n1_met"] is True
    assert verdict["ratio_largest"] == 1.30
    assert verdict["ratio_largest_met"] is False
    assert verdict["underruns_up_to_largest"] == 0


def test_markdown_marks_the_level_that_broke_real_time_and_writes_plots(tmp_path: Path) -> None:
    levels = [_level(1, True, 1.05), _level(2, False, 1.4, underruns=2)]
    result = {"levels": levels, "goals": goals(levels)}
    table = report.markdown(result)
    assert "| 2 | 1/1 |" in table and "**no**" in table
    assert "largest real-time N (1) = 1.05" in table
    report.plots(result, tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} == {"ttfa_cdf.png", "stages.png", "ttfa_vs_n.png"}
