"""The load sweep's Markdown table and PNG plots (latency CDF, per-stage stacked bars, TTFA vs N)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from perf.scenario import STAGES


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _row(name: str, level: dict[str, Any]) -> str:
    t, g, r = level["ttfa_ms"], level["gap_ms"], level["rtf"]
    orch = level.get("orchestrator", {})
    cells = [
        name,
        f"{level['answered']}/{level['turns']}",
        _ms(t["p50"]),
        _ms(t["p95"]),
        _ms(t["p99"]),
        _ms(g["p50"]),
        _ms(g["max"]),
        str(level["underruns"]),
        "-" if r["p50"] is None else f"{r['p50']:.2f}",
        "-" if not orch else f"{orch['cpu_cores']:.2f}",
        "-" if not orch else f"{orch['rss_peak_mb']:.0f}",
        "-" if "redis_commands_per_turn" not in level else f"{level['redis_commands_per_turn']:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| run | answered | TTFA p50 ms | TTFA p95 ms | TTFA p99 ms | gap p50 ms | gap max ms | underruns "
        "| RTF p50 | orch CPU cores | orch RSS MB | Redis cmds/turn |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for level in result["levels"]:
        lines.append(_row(f"orchestrated N={level['n']}", level))
    lines.append(_row("direct chain N=1", result["direct"]))
    ratio = result["ttfa_ratio_orchestrated_over_direct_n1"]
    lines += [
        "",
        f"Orchestrated / direct TTFA p50 at N=1: {'-' if ratio is None else f'{ratio:.2f}'}; "
        f"largest real-time N: {result['largest_realtime_n']}.",
        "",
        "Per-stage means from `response_done.latencies` (ms; listen-path stages are sums over the turn, "
        "speak-path stages are from the respond decision):",
        "",
        "| N | " + " | ".join(STAGES) + " |",
        "| --- |" + " --- |" * len(STAGES),
    ]
    for level in result["levels"]:
        stages = level["stages_ms"]
        lines.append(f"| {level['n']} | " + " | ".join(_ms(stages.get(s)) for s in STAGES) + " |")
    lines += ["", "Triton per model over each run (statistics API diff; work = minmo_compute_seconds_total):", ""]
    lines += ["| N | model | requests | queue ms | execute ms | work ms |", "| --- | --- | --- | --- | --- | --- |"]
    for level in result["levels"]:
        for m in level["triton"]:
            lines.append(
                f"| {level['n']} | {m['model']} | {m['requests']} | {m['queue_ms']:.1f} | "
                f"{m['execute_ms']:.1f} | {m['work_ms']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any], out: Path) -> None:
    levels = result["levels"]
    runs = [(f"N={lv['n']}", lv) for lv in levels] + [("direct N=1", result["direct"])]

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, level in runs:
        for ax, key in zip(axes, ("ttfa_ms", "gap_ms"), strict=True):
            values = np.sort(np.array(level["raw"][key]))
            if values.size:
                ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", label=label)
    for ax, title in zip(axes, ("time to first audio", "gap between audio chunks"), strict=True):
        ax.set(title=title, xlabel="ms", ylabel="fraction")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ttfa_cdf.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(len(levels))
    for stage in STAGES:
        values = np.array([lv["stages_ms"].get(stage, 0.0) for lv in levels])
        ax.bar([str(lv["n"]) for lv in levels], values, bottom=bottom, label=stage)
        bottom += values
    ax.set(title="per-stage latency (mean, stacked)", xlabel="concurrent sessions N", ylabel="ms")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "stages.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ns = [lv["n"] for lv in levels]
    for q in ("p50", "p95", "p99"):
        ax.plot(ns, [lv["ttfa_ms"][q] or np.nan for lv in levels], marker="o", label=q)
    direct = result["direct"]["ttfa_ms"]["p50"]
    if direct is not None:
        ax.axhline(direct, linestyle="--", color="gray", label="direct chain p50")
    ax.set(title="time to first audio vs N", xlabel="concurrent sessions N", ylabel="ms")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ttfa_vs_n.png", dpi=100)
    plt.close(fig)
