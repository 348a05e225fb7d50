"""Load sweep: N concurrent real-time Converse sessions, until real time breaks; plus the direct chain.

``python -m perf.load --server 127.0.0.1:50051 --triton 127.0.0.1:8001 --sessions 1,2,4 --out out/perf/load``
(the stack must be up: ``make up``). For each N it runs ``--rounds`` rounds of N sessions of one spoken turn at once
(``perf.scenario``) and measures, at the client, time to first audio, chunk gaps, underruns and the
reply's real-time factor; from the server, the per-stage latencies of ``response_done``, Triton's
per-model queue/compute (statistics diff over the run), the orchestrator's CPU and memory (psutil
on the pid in ``.run/stack.json``) and Redis commands per acknowledged turn. The sweep stops at the
first N with an underrun or a p95 time to first audio over 3 s. The same turn then runs once as a
direct chain of Triton calls (no orchestrator) to give the orchestrated / direct ratio at N=1.
Writes ``load.json``, ``load.md`` and PNG plots under ``--out``; prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis

from orchestrator.triton.client import TritonModels
from orchestrator.triton_stats import MODELS, Snapshot, diff, scrape_work
from perf import report
from perf.scenario import STAGES, TurnResult, converse_turn, direct_turn, spoken_question

TTFA_P95_LIMIT_MS = 3000.0


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


def redis_calls(url: str) -> int:
    stats = redis.Redis.from_url(url).info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def orchestrator_process(stack_file: Path) -> psutil.Process | None:
    try:
        return psutil.Process(int(json.loads(stack_file.read_text())["orchestrator_pid"]))
    except (OSError, KeyError, ValueError, psutil.Error):
        return None


async def triton_snapshot(models: TritonModels, metrics_url: str) -> Snapshot:
    return Snapshot({m: await models.statistics(m) for m in MODELS}, scrape_work(metrics_url))


async def _sample_rss(process: psutil.Process, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        await asyncio.sleep(0.25)


def summarize(results: list[TurnResult]) -> dict[str, Any]:
    ttfa = [r.ttfa_ms for r in results if r.ttfa_ms is not None]
    gaps = [g for r in results for g in r.gaps_ms]
    rtfs = [r.rtf for r in results if r.rtf is not None]
    staged = [r.stages for r in results if r.stages]
    return {
        "turns": len(results),
        "acknowledged": sum(r.acknowledged for r in results),
        "answered": len(ttfa),
        "ttfa_ms": percentiles(ttfa),
        "gap_ms": percentiles(gaps),
        "underruns": sum(r.underruns for r in results),
        "rtf": percentiles(rtfs),
        "reply_audio_s": float(np.mean([r.audio_s for r in results])),
        "stages_ms": {s: float(np.mean([st[s] for st in staged])) for s in STAGES} if staged else {},
        "raw": {"ttfa_ms": ttfa, "gap_ms": gaps},
    }


async def run_level(args: argparse.Namespace, n: int, clip: np.ndarray, speech_end: int) -> dict[str, Any]:
    models = TritonModels(args.triton)
    process = orchestrator_process(args.stack_file)
    before = await triton_snapshot(models, args.metrics)
    calls_before = redis_calls(args.redis)
    cpu_before = sum(process.cpu_times()[:2]) if process else 0.0
    peak, stop = [0], asyncio.Event()
    wall = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        if process:
            group.create_task(_sample_rss(process, peak, stop))
        results: list[TurnResult] = []
        for _ in range(args.rounds):
            results += await asyncio.gather(*(converse_turn(args.server, clip, speech_end) for _ in range(n)))
        stop.set()
    wall = time.perf_counter() - wall
    after = await triton_snapshot(models, args.metrics)
    await models.close()
    summary = summarize(results)
    cpu_s = sum(process.cpu_times()[:2]) - cpu_before if process else float("nan")
    summary |= {
        "n": n,
        "wall_s": wall,
        "orchestrator": {
            "cpu_cores": cpu_s / wall,
            "cpu_s_per_session": cpu_s / len(results),
            "rss_peak_mb": peak[0] / 2**20,
        },
        "redis_commands_per_turn": (redis_calls(args.redis) - calls_before) / max(1, summary["acknowledged"]),
        "triton": [asdict(diff(m, before, after)) for m in MODELS],
    }
    return summary


async def sweep(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as cache:
        clip, speech_end = spoken_question(Path(cache))
    await converse_turn(args.server, clip, speech_end)  # warm-up, not measured
    levels: list[dict[str, Any]] = []
    for n in args.sessions:
        level = await run_level(args, n, clip, speech_end)
        levels.append(level)
        p95 = level["ttfa_ms"]["p95"]
        level["realtime"] = level["underruns"] == 0 and p95 is not None and p95 <= TTFA_P95_LIMIT_MS
        print(f"N={n}: ttfa p95 {p95} ms, underruns {level['underruns']}, real time: {level['realtime']}")
        if not level["realtime"]:
            break
    direct = summarize([await direct_turn(args.triton, clip, speech_end) for _ in range(args.direct_runs)])
    direct["n"] = 1
    orchestrated = levels[0]["ttfa_ms"]["p50"] if levels and levels[0]["n"] == 1 else None
    ratio = orchestrated / direct["ttfa_ms"]["p50"] if orchestrated and direct["ttfa_ms"]["p50"] else None
    realtime = [lv["n"] for lv in levels if lv["realtime"]]
    return {
        "scenario": {"question": "espeak-ng, one turn, real-time pace", "speech_s": speech_end / 16_000},
        "levels": levels,
        "direct": direct,
        "ttfa_ratio_orchestrated_over_direct_n1": ratio,
        "largest_realtime_n": max(realtime) if realtime else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="127.0.0.1:50051", help="orchestrator gRPC address")
    parser.add_argument("--triton", default="127.0.0.1:8001", help="Triton gRPC address")
    parser.add_argument("--metrics", default="http://127.0.0.1:8002/metrics", help="Triton metrics URL")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="Redis URL")
    parser.add_argument("--stack-file", type=Path, default=Path(".run/stack.json"), help="orchestrator pid source")
    parser.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of N concurrent sessions per level")
    parser.add_argument("--direct-runs", type=int, default=3, help="direct-chain turns at N=1")
    parser.add_argument("--out", type=Path, default=Path("out/perf/load"))
    args = parser.parse_args(argv)
    result = asyncio.run(sweep(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(result, indent=2))
    table = report.markdown(result)
    (args.out / "load.md").write_text(table)
    report.plots(result, args.out)
    print(table)
    print(f"wrote {args.out}/load.json, load.md, ttfa_cdf.png, stages.png, ttfa_vs_n.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
