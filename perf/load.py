"""Load sweep: N concurrent real-time Converse conversations, until real time breaks; the direct chain beside it.

``make perf`` (or ``python -m perf.load``; the local stack's Triton must be up: ``make up``). The
sweep starts its own ``minmo serve`` against the stack's Triton, with a trace file, a metrics port
and a Redis of its own, so that every figure of the run comes from processes nothing else uses.
For each N (1, 2, 4, 8, ... or ``--sessions``) it runs ``--rounds`` rounds of N concurrent
conversations (``perf.conversation``: a question, a pause, an answer, a barge-in over it, a pause,
a second answer) and, in the same level, N concurrent turns of the first question as a direct
chain of Triton calls without the orchestrator (``perf.scenario.direct_turn``). Per level: time to
first audio p50/p95/p99 (first answers, comparable with the direct chain; and all answers), gaps
between audio chunks, underruns, real-time factor, barge-in to silence, the per-stage breakdown
from the orchestrator's spans, Triton's per-model queue/compute (statistics diff), the
orchestrator's CPU and memory per session, and Redis commands per acknowledged turn. The sweep
stops after the first level that is not real time (an underrun, a failed conversation, or a p95
time to first audio over 3 s). Writes ``load.json``, ``load.md`` and PNG plots under ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis

from orchestrator.devstack.orchestrator_process import start_orchestrator, wait_until_serving
from orchestrator.devstack.redis_service import ensure_redis
from orchestrator.devstack.triton_launcher import free_port
from orchestrator.triton.client import TritonModels
from orchestrator.triton_stats import MODELS, Snapshot, diff, scrape
from perf import report, spans
from perf.conversation import Clips, ConversationResult, converse_conversation
from perf.scenario import LEAD_S, RATE, STAGES, TurnResult, direct_turn

TTFA_P95_LIMIT_MS = 3000.0
DIRECT_TAIL_S = 1.6  # silence after the question in the direct chain: room for the end-of-turn decision
DEFAULT_LEVELS = (1, 2, 4, 8, 16, 32)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    array = np.array(values)
    return {
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "p99": float(np.percentile(array, 99)),
        "max": float(array.max()),
    }


def summarize(turns: list[TurnResult]) -> dict[str, Any]:
    """What a listener heard over these answers (times in ms)."""
    ttfa = [t.ttfa_ms for t in turns if t.ttfa_ms is not None and t.ttfa_ms > 0]
    gaps = [g for t in turns for g in t.gaps_ms]
    rtfs = [t.rtf for t in turns if t.rtf is not None]
    staged = [t.stages for t in turns if t.stages]
    return {
        "turns": len(turns),
        "answered": len(ttfa),
        "ttfa_ms": percentiles(ttfa),
        "gap_ms": percentiles(gaps),
        "underruns": sum(t.underruns for t in turns),
        "rtf": percentiles(rtfs),
        "reply_audio_s": float(np.mean([t.audio_s for t in turns])) if turns else 0.0,
        "stages_ms": {s: float(np.mean([st[s] for st in staged])) for s in STAGES} if staged else {},
        "raw": {"ttfa_ms": ttfa, "gap_ms": gaps},
    }


def redis_calls(url: str) -> int:
    stats = redis.Redis.from_url(url).info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


async def triton_snapshot(models: TritonModels, metrics_url: str) -> Snapshot:
    return Snapshot({m: await models.statistics(m) for m in MODELS}, *scrape(metrics_url))


async def _sample_rss(process: psutil.Process, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        await asyncio.sleep(0.25)


def rounds(args: argparse.Namespace, n: int) -> int:
    """Enough rounds that every level has at least ``--min-conversations`` samples (N=1 needs the most)."""
    return max(args.rounds, -(-args.min_conversations // n))


async def orchestrated(args: argparse.Namespace, n: int, clips: Clips) -> list[ConversationResult]:
    results: list[ConversationResult] = []
    for _ in range(rounds(args, n)):
        results += await asyncio.gather(*(converse_conversation(args.server, clips) for _ in range(n)))
    return results


async def direct(args: argparse.Namespace, n: int, clips: Clips) -> list[TurnResult]:
    clip = np.concatenate([clips.question, np.zeros(int(DIRECT_TAIL_S * RATE), np.float32)])
    turns: list[TurnResult] = []
    for _ in range(rounds(args, n)):
        turns += await asyncio.gather(*(direct_turn(args.triton, clip, len(clips.question)) for _ in range(n)))
    return turns


async def run_level(args: argparse.Namespace, n: int, clips: Clips, process: psutil.Process | None) -> dict[str, Any]:
    models = TritonModels(args.triton)
    before = await triton_snapshot(models, args.triton_metrics)
    speculation_before = orchestrator_speculation(args)
    calls_before = redis_calls(args.redis)
    cpu_before = sum(process.cpu_times()[:2]) if process else 0.0
    peak, stop = [0], asyncio.Event()
    start_ns, wall = time.time_ns(), time.perf_counter()
    async with asyncio.TaskGroup() as group:
        if process:
            group.create_task(_sample_rss(process, peak, stop))
        conversations = await orchestrated(args, n, clips)
        stop.set()
    wall = time.perf_counter() - wall
    end_ns = time.time_ns()
    after = await triton_snapshot(models, args.triton_metrics)
    speculation_after = orchestrator_speculation(args)
    await models.close()
    cpu_s = sum(process.cpu_times()[:2]) - cpu_before if process else float("nan")
    acknowledged = sum(t.acknowledged for c in conversations for t in c.turns)
    redis_commands = redis_calls(args.redis) - calls_before
    direct_turns = await direct(args, n, clips)

    first = summarize([c.first for c in conversations])
    every = summarize([t for c in conversations for t in c.turns])
    direct_summary = summarize(direct_turns)
    ratio = (
        first["ttfa_ms"]["p50"] / direct_summary["ttfa_ms"]["p50"]
        if first["ttfa_ms"]["p50"] and direct_summary["ttfa_ms"]["p50"]
        else None
    )
    breakdown_rows = spans.turn_breakdowns(spans.read_spans(args.trace_file), start_ns, end_ns)
    errors = [c.error for c in conversations if c.error]
    p95 = every["ttfa_ms"]["p95"]
    return {
        "n": n,
        "conversations": len(conversations),
        "errors": errors,
        "first_answer": first,
        "all_answers": every,
        "barge_in_to_last_audio_ms": percentiles(
            [v for c in conversations if (v := c.barge_in_to_last_audio_ms) is not None]
        ),
        "barge_in_to_done_ms": percentiles([v for c in conversations if (v := c.barge_in_to_done_ms) is not None]),
        "direct": direct_summary,
        "ttfa_ratio_orchestrated_over_direct": ratio,
        "span_breakdown_ms": spans.mean_breakdown(breakdown_rows),
        "traced_turns": len(breakdown_rows),
        "wall_s": wall,
        "orchestrator": {
            "cpu_cores": cpu_s / wall,
            "cpu_s_per_conversation": cpu_s / max(1, len(conversations)),
            "rss_peak_mb": peak[0] / 2**20,
            "rss_mb_per_session": peak[0] / 2**20 / n,
        },
        # Commands Redis ran (inside scripts too): turn appends, plus the lease/TTL keep-alive of every open session.
        "redis_commands_per_turn": redis_commands / max(1, acknowledged),
        "redis_commands_per_session_minute": redis_commands / (n * wall / 60),
        "triton": [asdict(diff(m, before, after)) for m in MODELS],
        "speculation": {k: speculation_after.get(k, 0.0) - v for k, v in speculation_before.items()},
        "realtime": not errors
        and every["underruns"] == 0
        and every["answered"] == every["turns"]
        and p95 is not None
        and p95 <= TTFA_P95_LIMIT_MS,
    }


def goals(levels: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals, reported as measured: ratios at N=1 and at the largest real-time N, underruns below it."""
    largest = None
    for level in levels:  # the levels run in order and the sweep stops at the first that is not real time
        if not level["realtime"]:
            break
        largest = level
    n1 = next((lv for lv in levels if lv["n"] == 1), None)
    ratio_n1 = n1["ttfa_ratio_orchestrated_over_direct"] if n1 else None
    ratio_largest = largest["ttfa_ratio_orchestrated_over_direct"] if largest else None
    below = [lv for lv in levels if largest and lv["n"] <= largest["n"]]
    return {
        "largest_realtime_n": largest["n"] if largest else None,
        "ratio_n1": ratio_n1,
        "ratio_n1_met": ratio_n1 is not None and ratio_n1 <= 1.10,
        "ratio_largest": ratio_largest,
        "ratio_largest_met": ratio_largest is not None and ratio_largest <= 1.25,
        "underruns_up_to_largest": sum(lv["all_answers"]["underruns"] for lv in below),
    }


@contextlib.contextmanager
def own_redis(args: argparse.Namespace) -> Iterator[None]:
    """A Redis of this run's own, unless ``--redis`` names one: its command counters then count only this run."""
    if args.redis:
        yield
        return
    port = free_port()
    pid = ensure_redis("127.0.0.1", port, args.out / "redis")
    args.redis = f"redis://127.0.0.1:{port}/0"
    try:
        yield
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


_SPECULATION = re.compile(r'^minmo_speculation(?:_discarded_work)?_total\{(?:outcome|kind)="([^"]+)"\} (\S+)$', re.M)


def orchestrator_speculation(args: argparse.Namespace) -> dict[str, float]:
    """Speculative starts, commits, discards and the discarded work so far, from the run's orchestrator."""
    if not getattr(args, "orchestrator_metrics", None):
        return {}
    with urllib.request.urlopen(args.orchestrator_metrics, timeout=5) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in _SPECULATION.findall(text)}


@contextlib.contextmanager
def own_orchestrator(args: argparse.Namespace) -> Iterator[psutil.Process | None]:
    """``minmo serve`` for this run (trace file + metrics), unless ``--server`` names a running one."""
    if args.server:
        yield None
        return
    port = free_port()
    args.server = f"127.0.0.1:{port}"
    args.trace_file.unlink(missing_ok=True)
    metrics_port = free_port()
    args.orchestrator_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    extra = [f"--trace-file={args.trace_file}", f"--metrics-port={metrics_port}", f"--speculation={args.speculation}"]
    process = start_orchestrator(
        args.out,
        port=port,
        triton_url=args.triton,
        redis_url=args.redis,
        max_sessions=max(64, 2 * max(args.sessions)),
        extra_args=extra,
    )
    try:
        wait_until_serving(process)
        yield psutil.Process(process.process.pid)
    finally:
        process.process.terminate()
        process.process.wait(timeout=30)
        args.server = None


async def sweep(args: argparse.Namespace, process: psutil.Process | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as cache:
        clips = Clips.speak(Path(cache))
    await converse_conversation(args.server, clips)  # warm-up (model caches, connections), not measured
    levels: list[dict[str, Any]] = []
    for n in args.sessions:
        level = await run_level(args, n, clips, process)
        levels.append(level)
        print(
            f"N={n}: first answer TTFA p50 {report.ms(level['first_answer']['ttfa_ms']['p50'])} ms "
            f"(direct {report.ms(level['direct']['ttfa_ms']['p50'])} ms), all answers p95 "
            f"{report.ms(level['all_answers']['ttfa_ms']['p95'])} ms, underruns {level['all_answers']['underruns']}, "
            f"errors {len(level['errors'])}, real time: {level['realtime']}",
            flush=True,
        )
        if not level["realtime"]:
            break
    return {
        "scenario": {
            "conversation": "question, pause, answer; barge-in 1.5 s into the answer; pause; second answer",
            "question_s": (len(clips.question) / RATE) - LEAD_S,
            "barge_in_s": len(clips.barge_in) / RATE,
            "conversations_per_level": {str(n): rounds(args, n) * n for n in args.sessions},
        },
        "machine": {"cpus": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30)},
        "levels": levels,
        "goals": goals(levels),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", help="a running orchestrator to measure instead of starting one (no spans then)")
    parser.add_argument("--triton", default="127.0.0.1:8001", help="Triton gRPC address")
    parser.add_argument("--triton-metrics", default="http://127.0.0.1:8002/metrics", help="Triton metrics URL")
    parser.add_argument("--redis", help="Redis URL (default: a redis-server of the run's own, on a free port)")
    parser.add_argument(
        "--sessions",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(DEFAULT_LEVELS),
        help="levels of N to sweep, in order (stops after the first that is not real time)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="least rounds of N conversations per level")
    parser.add_argument(
        "--min-conversations", type=int, default=8, help="more rounds at small N until a level has this many samples"
    )
    parser.add_argument("--out", type=Path, default=Path("out/perf/load"))
    parser.add_argument("--trace-file", type=Path, help="span file of the run (default: OUT/traces.jsonl)")
    parser.add_argument(
        "--speculation",
        default="on",
        help="the orchestrator's --speculation: on, off, or off,on to sweep both (one after the other, each with "
        "its own orchestrator; results in OUT/speculation-off and OUT/speculation-on, compared in OUT/speculation.md)",
    )
    args = parser.parse_args(argv)
    modes = args.speculation.split(",")
    if not set(modes) <= {"on", "off"}:
        parser.error(f"--speculation takes on, off or off,on; got {args.speculation!r}")
    # SIGTERM unwinds like Ctrl-C, so the run's own orchestrator and Redis are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base, trace_file, results = args.out, args.trace_file, {}
    for mode in modes:
        args.speculation = mode
        args.out = base if len(modes) == 1 else base / f"speculation-{mode}"
        args.out.mkdir(parents=True, exist_ok=True)
        args.trace_file = trace_file if trace_file and len(modes) == 1 else args.out / "traces.jsonl"
        with own_redis(args), own_orchestrator(args) as process:
            result = asyncio.run(sweep(args, process))
        result["speculation"] = mode
        results[mode] = result
        (args.out / "load.json").write_text(json.dumps(result, indent=2))
        table = report.markdown(result)
        (args.out / "load.md").write_text(table)
        report.plots(result, args.out)
        print(table)
        print(f"wrote {args.out}/load.json, load.md, ttfa_cdf.png, stages.png, ttfa_vs_n.png")
        args.redis = None
    if len(modes) > 1:
        comparison = report.speculation_comparison(results["off"], results["on"])
        (base / "speculation.md").write_text(comparison)
        print(comparison)
    return 0


if __name__ == "__main__":
    sys.exit(main())
