"""``perf.turn_taking``'s Markdown tables and plots: the delay / premature-response trade-off and speculation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _f(value: float | None, digits: int = 0, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def point_key(point: dict[str, Any]) -> tuple[int, float, int]:
    return point["respond_after_ms"], point["threshold"], point["min_silence_ms"]


def tradeoff_table(points: Sequence[dict[str, Any]], marks: dict[tuple[int, float, int], str]) -> str:
    lines = [
        "| labels (silence) | silence floor | threshold | mean delay ms | p90 delay ms | recall | "
        "premature / 100 turns | premature in monologues / 100 turns | other false alarms | barge-in recall |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in points:
        a, m = p["all"], p["monologues"]
        mark = marks.get(point_key(p), "")
        lines.append(
            f"| {p['respond_after_ms']} ms | {p['min_silence_ms']} ms | {p['threshold']:.2f}{mark} | "
            f"{_f(a['mean_delay_ms'])} | {_f(a['p90_delay_ms'])} | {_f(a['recall'], 3)} | "
            f"{_f(a['premature_per_turn'], 1, 100)} | {_f(m['premature_per_turn'], 1, 100)} | "
            f"{a['other_false_alarms']} | {_f(a['barge_in_recall'], 3)} |"
        )
    return "\n".join(lines)


def speculation_table(points: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| end point: silence ms | or P(respond) over | starts | committed | discarded | of which the user went on | "
        "lead p50 ms | lead mean ms | lead p10 ms | speak path hidden | wasted ms per discard | discards per minute |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in points:
        lines.append(
            f"| {p['silence_ms']} | {p['start']:.2f} | {p['starts']} | {p['committed']} | "
            f"{_f(p['discarded_share'], 1, 100)} % | {p['discarded_user_went_on']} | {_f(p['lead_ms_p50'])} | "
            f"{_f(p['lead_ms_mean'])} | {_f(p['lead_ms_p10'])} | {_f(p['hidden_share'], 0, 100)} % | "
            f"{_f(p['wasted_ms_per_discard'])} | {_f(p['discards_per_minute'], 2)} |"
        )
    return "\n".join(lines)


def plot_tradeoff(
    points: Sequence[dict[str, Any]], baseline: dict[str, Any], chosen: dict[str, Any], out: Path
) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, subset, title in ((axes[0], "all", "all held-out dialogues"), (axes[1], "monologues", "monologues only")):
        for label, floor in sorted({(p["respond_after_ms"], p["min_silence_ms"]) for p in points}, reverse=True):
            series = [
                p
                for p in points
                if (p["respond_after_ms"], p["min_silence_ms"]) == (label, floor)
                and p[subset]["mean_delay_ms"] is not None
            ]
            xs = [p[subset]["mean_delay_ms"] for p in series]
            ys = [100 * p[subset]["premature_per_turn"] for p in series]
            ax.plot(xs, ys, marker="o" if floor == 0 else "^", label=f"labels {label} ms, floor {floor} ms")
            for p, x, y in zip(series, xs, ys, strict=True):
                ax.annotate(f"{p['threshold']:.2f}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for point, style, name in ((baseline, "ks", "today"), (chosen, "r*", "chosen")):
            ax.plot(
                point[subset]["mean_delay_ms"],
                100 * point[subset]["premature_per_turn"],
                style,
                markersize=12,
                fillstyle="none",
                label=name,
            )
        ax.set_xlabel("mean end-of-turn delay (ms after the last word)")
        ax.set_ylabel("premature responses per 100 turns")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Turn-taking trade-off over thresholds (numbers), label silences and silence floors")
    fig.tight_layout()
    fig.savefig(out / "tradeoff.png", dpi=110)
    plt.close(fig)


def plot_speculation(points: Sequence[dict[str, Any]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    twin = ax.twinx()
    for start in sorted({p["start"] for p in points}):
        series = [p for p in points if p["start"] == start]
        xs = [p["silence_ms"] for p in series]
        ax.plot(xs, [p["lead_ms_p50"] or 0 for p in series], "o-", label=f"lead p50, P > {start:.2f}")
        twin.plot(xs, [p["discards_per_minute"] for p in series], "^:", label=f"discards/min, P > {start:.2f}")
    ax.axhline(200, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("end point: silence after the user's last voice (ms)")
    ax.set_ylabel("lead over the respond decision (ms)")
    twin.set_ylabel("discarded speculative starts per minute of audio")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [str(h.get_label()) for h in handles], fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    ax.set_title("Speculative starts: lead gained vs discarded")
    fig.tight_layout()
    fig.savefig(out / "speculation.png", dpi=110)
    plt.close(fig)
