"""The load sweep's Markdown tables and PNG plots (latency CDF, per-stage stacked bars from spans, TTFA vs N)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from perf.spans import LISTEN_ATTRIBUTES, SPEAK_STAGES


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _level_row(level: dict[str, Any]) -> str:
    first, every, direct = level["first_answer"], level["all_answers"], level["direct"]
    orch = level["orchestrator"]
    cells = [
        str(level["n"]),
        f"{every['answered']}/{every['turns']}",
        ms(first["ttfa_ms"]["p50"]),
        ms(first["ttfa_ms"]["p95"]),
        ms(first["ttfa_ms"]["p99"]),
        ms(direct["ttfa_ms"]["p50"]),
        _ratio(level["ttfa_ratio_orchestrated_over_direct"]),
        ms(every["ttfa_ms"]["p95"]),
        ms(level["barge_in_to_last_audio_ms"]["p50"]),
        ms(every["gap_ms"]["p50"]),
        ms(every["gap_ms"]["max"]),
        str(every["underruns"]),
        _ratio(every["rtf"]["p50"]),
        f"{orch['cpu_cores']:.2f}",
        f"{orch['rss_mb_per_session']:.0f}",
        f"{level['redis_commands_per_turn']:.0f} ({level['redis_commands_per_session_minute']:.0f}/min)",
        "yes" if level["realtime"] else "**no**",
    ]
    return "| " + " | ".join(cells) + " |"


def _stage_row(level: dict[str, Any]) -> str:
    stages = level["span_breakdown_ms"]
    decision_to_audio = sum(stages.get(s, 0.0) for s in SPEAK_STAGES)
    ttfa = level["all_answers"]["raw"]["ttfa_ms"]
    wait = float(np.mean(ttfa)) - decision_to_audio if ttfa and stages else None
    cells = [str(level["n"]), str(level["traced_turns"]), ms(wait)]
    cells += [ms(stages.get(s)) for s in SPEAK_STAGES]
    cells += [ms(decision_to_audio if stages else None)]
    cells += [ms(stages.get(f"listen.{k}")) for k in LISTEN_ATTRIBUTES]
    return "| " + " | ".join(cells) + " |"


def markdown(result: dict[str, Any]) -> str:
    goals = result["goals"]
    lines = [
        "| N | answered | TTFA p50 | TTFA p95 | TTFA p99 | direct TTFA p50 | orch/direct | all answers TTFA p95 "
        "| barge-in -> silence p50 | gap p50 | gap max | underruns | RTF p50 | orch CPU cores | orch MB/session "
        "| Redis cmds/turn (per session-minute) | real time |",
        "| --- " * 17 + "|",
    ]
    lines += [_level_row(level) for level in result["levels"]]
    lines += [
        "",
        "Times in ms. TTFA = end of the user's speech -> first reply audio byte at the client; the TTFA columns and "
        "the ratio are for the first answer of each conversation (the same turn the direct chain runs), "
        "'all answers' adds the answer after the barge-in. RTF = reply streaming time / reply audio duration.",
        "",
        f"Goals: orchestrated/direct at N=1 = {_ratio(goals['ratio_n1'])} (goal <= 1.10: "
        f"{'met' if goals['ratio_n1_met'] else 'not met'}); at the largest real-time N "
        f"({goals['largest_realtime_n']}) = {_ratio(goals['ratio_largest'])} (goal <= 1.25: "
        f"{'met' if goals['ratio_largest_met'] else 'not met'}); underruns up to that N: "
        f"{goals['underruns_up_to_largest']}.",
        "",
        "Where the time goes (means from the orchestrator's spans; turn-taking wait = mean TTFA - decision->audio, "
        "i.e. end of speech -> respond decision, mostly the silence the duplex model waits for):",
        "",
        "| N | traced turns | turn-taking wait | "
        + " | ".join(SPEAK_STAGES)
        + " | decision -> audio | "
        + " | ".join(f"listen {k}" for k in LISTEN_ATTRIBUTES)
        + " |",
        "| --- " * (4 + len(SPEAK_STAGES) + len(LISTEN_ATTRIBUTES)) + "|",
    ]
    lines += [_stage_row(level) for level in result["levels"]]
    lines += [
        "",
        "Triton per model over each level's conversations (statistics API diff; work = the time the model "
        "was busy, from its own counter, which also covers decoupled streams; streams/step = the mean of "
        "`minmo_batch_size`, how many streams one batched step served):",
        "",
    ]
    lines += [
        "| N | model | requests | queue ms | execute ms | work ms | steps | streams/step |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for level in result["levels"]:
        for m in level["triton"]:
            lines.append(
                f"| {level['n']} | {m['model']} | {m['requests']} | {m['queue_ms']:.1f} | "
                f"{m['execute_ms']:.1f} | {m['work_ms']:.1f} | {m.get('steps', 0)} | {m.get('mean_batch', 0.0):.2f} |"
            )
    return "\n".join(lines) + "\n"


def speculation_comparison(off: dict[str, Any], on: dict[str, Any]) -> str:
    """The same sweep without and with speculative responses: what a listener gains, what it costs."""
    lines = [
        "| N | TTFA p50 off / on | TTFA p95 off / on | all answers p50 off / on | p50 gained | "
        "speculations started | discarded | discarded work: text tokens / speech tokens / audio s | "
        "busy s off / on (backbone + speech LM + vocoder) | real time off / on |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    by_n = {level["n"]: level for level in on["levels"]}
    for level_off in off["levels"]:
        level_on = by_n.get(level_off["n"])
        if level_on is None:
            continue
        a, b = level_off["first_answer"]["ttfa_ms"], level_on["first_answer"]["ttfa_ms"]
        every_a, every_b = level_off["all_answers"]["ttfa_ms"], level_on["all_answers"]["ttfa_ms"]
        spec = level_on.get("speculation", {})
        started = spec.get("started", 0.0)
        discarded = spec.get("discarded", 0.0)
        share = f"{discarded:.0f} ({100 * discarded / started:.0f} %)" if started else "0"

        def busy(level: dict[str, Any]) -> float:
            return sum(m["work_ms"] for m in level["triton"] if m["model"] in ("backbone", "speech_lm", "vocoder"))

        gained = a["p50"] - b["p50"] if a["p50"] is not None and b["p50"] is not None else None
        lines.append(
            f"| {level_off['n']} | {ms(a['p50'])} / {ms(b['p50'])} | {ms(a['p95'])} / {ms(b['p95'])} | "
            f"{ms(every_a['p50'])} / {ms(every_b['p50'])} | {ms(gained)} | {started:.0f} | {share} | "
            f"{spec.get('text_tokens', 0.0):.0f} / {spec.get('speech_tokens', 0.0):.0f} / "
            f"{spec.get('audio_seconds', 0.0):.1f} | {busy(level_off) / 1000:.1f} / {busy(level_on) / 1000:.1f} | "
            f"{'yes' if level_off['realtime'] else 'no'} / {'yes' if level_on['realtime'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any], out: Path) -> None:
    levels = result["levels"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for level in levels:
        for ax, key in zip(axes, ("ttfa_ms", "gap_ms"), strict=True):
            for label, summary, style in (
                (f"N={level['n']}", level["all_answers"], "-"),
                (f"direct N={level['n']}", level["direct"], ":"),
            ):
                values = np.sort(np.array(summary["raw"][key]))
                if values.size:
                    ax.step(values, np.arange(1, values.size + 1) / values.size, style, where="post", label=label)
    for ax, title in zip(axes, ("time to first audio", "gap between audio chunks"), strict=True):
        ax.set(title=title, xlabel="ms", ylabel="fraction")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "ttfa_cdf.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(len(levels))
    names = [str(lv["n"]) for lv in levels]
    for stage in SPEAK_STAGES:
        values = np.array([lv["span_breakdown_ms"].get(stage, 0.0) for lv in levels])
        ax.bar(names, values, bottom=bottom, label=stage)
        bottom += values
    ax.set(title="respond decision -> first audio, per stage (span means)", xlabel="concurrent sessions N", ylabel="ms")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "stages.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ns = [lv["n"] for lv in levels]
    for q in ("p50", "p95", "p99"):
        quantile = [lv["first_answer"]["ttfa_ms"][q] or np.nan for lv in levels]
        ax.plot(ns, quantile, marker="o", label=f"orchestrated {q}")
    ax.plot(ns, [lv["direct"]["ttfa_ms"]["p50"] or np.nan for lv in levels], "k--", marker="x", label="direct p50")
    ax.set(title="time to first audio vs N", xlabel="concurrent sessions N", ylabel="ms", xscale="log", xticks=ns)
    ax.set_xticklabels([str(n) for n in ns])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ttfa_vs_n.png", dpi=100)
    plt.close(fig)
