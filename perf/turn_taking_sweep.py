"""The turn-taking trade-off from a predictor's per-frame probabilities: thresholds, defaults, speculation.

Pure functions over held-out dialogues and the probabilities a trained predictor gives them (no
model, no training), so a sweep over many policies costs a few seconds. ``perf.turn_taking`` trains
the predictors and writes the report.

* :func:`policy_point`: end-of-turn delay, recall, premature responses (a respond fire while the user
  is still in a turn: speaking, or in a pause inside it) and other false alarms for one policy.
* :func:`pick_default`: the stated rule that picks the label silence and threshold.
* :func:`speculation_point`: the runtime's speculation rule (an end point after a short silence or
  on a respond-now probability over a lower threshold) replayed: how much earlier a response starts
  (lead over the decision) and how often a speculative start is discarded (the user went on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from orchestrator.converse.speculation import EndPoint, SpeculationSettings
from services.duplex.dialogues import FRAME_SECONDS, Dialogue, frame_end, frame_voice
from services.duplex.evaluate import evaluate_probs
from services.duplex.model import Decision
from services.duplex.policy import DecisionPolicy

# The speak path's decision -> first audio on this machine at N=1 (README, load sweep: 148-210 ms):
# a speculative start this much before the decision hides it entirely.
SPEAK_PATH_MS = 200.0


@dataclass(frozen=True)
class Run:
    """One predictor's held-out probabilities: per dialogue ``[T, 3]``, and which dialogues are monologues."""

    respond_after_ms: int
    dialogues: Sequence[Dialogue]
    probs: Sequence[torch.Tensor]
    monologue: Sequence[bool]

    @cached_property
    def voice(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per dialogue, the VAD's voiced frames and silences (:func:`frame_voice`): once, not once per point."""
        return [frame_voice(d) for d in self.dialogues]


def policy_for(threshold: float, min_silence_ms: int = 0) -> DecisionPolicy:
    """The runtime policy with another respond threshold (re-arm kept below it) and silence floor."""
    return DecisionPolicy(
        respond_threshold=threshold,
        rearm_threshold=min(0.3, round(0.6 * threshold, 3)),
        min_silence_ms=min_silence_ms,
    )


def policy_point(run: Run, threshold: float, min_silence_ms: int = 0) -> dict[str, Any]:
    """End-of-turn figures of ``run`` under ``threshold``, over all held-out dialogues and the monologues alone."""
    policy = policy_for(threshold, min_silence_ms)
    point: dict[str, Any] = {
        "respond_after_ms": run.respond_after_ms,
        "threshold": threshold,
        "min_silence_ms": min_silence_ms,
    }
    for name, keep in (("all", lambda m: True), ("monologues", lambda m: m), ("dialogues", lambda m: not m)):
        index = [i for i, m in enumerate(run.monologue) if keep(m)]
        metrics = evaluate_probs(
            [run.dialogues[i] for i in index],
            [run.probs[i] for i in index],
            policy,
            respond_after=run.respond_after_ms / 1000,
            silences=[run.voice[i][1] for i in index],
        )
        eot = metrics["end_of_turn"]
        point[name] = {
            "turns": eot["events"],
            "recall": eot["recall"],
            "precision": eot["precision"],
            "premature": eot["premature"],
            "premature_per_turn": eot["premature_per_event"],
            "other_false_alarms": eot["false_alarms"] - eot["premature"],
            "mean_delay_ms": eot["mean_delay_ms"],
            "p90_delay_ms": eot["p90_delay_ms"],
            "barge_in_recall": metrics["barge_in"]["recall"],
            "barge_in_precision": metrics["barge_in"]["precision"],
        }
    return point


@dataclass(frozen=True)
class DefaultRule:
    """Among the points no worse than the baseline on premature responses, missed turns and other false
    alarms, the one with the lowest mean end-of-turn delay (ties: fewer premature responses)."""

    baseline_respond_after_ms: int = 600
    baseline_threshold: float = 0.5
    baseline_min_silence_ms: int = 0
    recall_slack: float = 0.005
    false_alarm_slack: int = 0
    min_gain_ms: float = 20.0  # a new default must answer this much sooner: less is noise at 120 ms frames

    def text(self) -> str:
        return (
            f"the lowest mean end-of-turn delay among the (label silence, threshold, silence floor) points whose "
            f"premature responses per turn, recall (-{self.recall_slack}) and other false alarms "
            f"(+{self.false_alarm_slack}) are no worse than today's ({self.baseline_respond_after_ms} ms labels, "
            f"threshold {self.baseline_threshold}, no floor), all on the held-out dialogues and monologues together; "
            f"today's stays unless that point answers at least {self.min_gain_ms:.0f} ms sooner"
        )


def pick_default(points: Sequence[dict[str, Any]], rule: DefaultRule) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(baseline point, chosen point)`` by ``rule``; the baseline is always eligible, and kept unless the
    best eligible point gains ``rule.min_gain_ms``."""
    baseline = next(
        p
        for p in points
        if p["respond_after_ms"] == rule.baseline_respond_after_ms
        and p["threshold"] == rule.baseline_threshold
        and p["min_silence_ms"] == rule.baseline_min_silence_ms
    )
    base = baseline["all"]

    def eligible(p: dict[str, Any]) -> bool:
        a = p["all"]
        return (
            a["mean_delay_ms"] is not None
            and a["premature_per_turn"] <= base["premature_per_turn"]
            and a["recall"] >= base["recall"] - rule.recall_slack
            and a["other_false_alarms"] <= base["other_false_alarms"] + rule.false_alarm_slack
        )

    chosen = min(
        (p for p in points if eligible(p)), key=lambda p: (p["all"]["mean_delay_ms"], p["all"]["premature_per_turn"])
    )
    if chosen["all"]["mean_delay_ms"] > base["mean_delay_ms"] - rule.min_gain_ms:
        chosen = baseline
    return baseline, chosen


def speculation_point(
    run: Run,
    threshold: float,
    silence_ms: int,
    start: float,
    max_hold_s: float = SpeculationSettings().max_hold_seconds,
    min_silence_ms: int = 0,
) -> dict[str, Any]:
    """The runtime's speculation rule over all held-out dialogues, against the respond decision at ``threshold``.

    Replays :class:`orchestrator.converse.speculation.EndPoint` frame by frame: a frame is voiced when
    it overlaps the user's speech (the dialogue's own timings standing in for the VAD), the silence is
    the time since the user's last voice. A speculation starts when the end point is set while the
    assistant is silent; it is *committed* when the decision fires (lead = decision time minus start),
    *discarded* when the user's voice comes back first (the user went on: a pause inside a turn, or a
    new turn) or it has been held ``max_hold_s`` without a decision.
    """
    decision = policy_for(threshold, min_silence_ms)
    settings = SpeculationSettings(silence_ms=silence_ms, start=start, max_hold_seconds=max_hold_s)
    leads: list[float] = []
    wasted: list[float] = []
    starts = user_went_on = decisions_without = 0
    seconds = 0.0
    for dialogue, probs, (voice, silences) in zip(run.dialogues, run.probs, run.voice, strict=True):
        seconds += dialogue.n_frames * FRAME_SECONDS
        gate, end_point = decision.new_gate(), EndPoint(settings)
        live_since: float | None = None
        heard = False
        for k, (p, speaking) in enumerate(zip(probs, dialogue.speaking.tolist(), strict=True)):
            t = frame_end(k)
            voiced, silence = bool(voice[k]), int(silences[k])
            heard = heard or voiced
            if live_since is not None and (voiced or t - live_since > max_hold_s + 1e-9):
                wasted.append(t - live_since)
                user_went_on += voiced
                live_since = None
            respond = float(p[Decision.RESPOND_NOW])
            if heard and not speaking and end_point.frame(respond, k, voiced=voiced, silence_ms=silence) is True:
                starts += 1
                live_since = t
            if gate.step(p, bool(speaking), silence) == Decision.RESPOND_NOW:
                if live_since is not None:
                    leads.append(t - live_since)
                else:
                    decisions_without += 1
                live_since, heard = None, False
                end_point.reset()
            elif speaking:
                end_point.reset()
    lead_ms = np.array(leads) * 1000
    discarded = len(wasted)
    return {
        "threshold": threshold,
        "silence_ms": silence_ms,
        "start": start,
        "starts": starts,
        "committed": len(leads),
        "discarded": discarded,
        "discarded_share": discarded / starts if starts else None,
        "discarded_user_went_on": user_went_on,
        "decisions_without_speculation": decisions_without,
        "lead_ms_mean": float(lead_ms.mean()) if len(lead_ms) else None,
        "lead_ms_p50": float(np.percentile(lead_ms, 50)) if len(lead_ms) else None,
        "lead_ms_p10": float(np.percentile(lead_ms, 10)) if len(lead_ms) else None,
        "hidden_share": float((lead_ms >= SPEAK_PATH_MS).mean()) if len(lead_ms) else None,
        "wasted_ms_per_discard": float(np.mean(wasted) * 1000) if wasted else 0.0,
        "discards_per_minute": discarded / seconds * 60 if seconds else 0.0,
    }
