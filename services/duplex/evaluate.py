"""Event-level evaluation of the duplex predictor under the runtime policy.

Frame accuracy says little about turn-taking: what matters is whether the assistant answers once
per finished turn, stops once per barge-in, and never acts otherwise. So each policy *fire* (see
:mod:`services.duplex.policy`) is matched to at most one labelled event of its kind (see
:mod:`services.duplex.dialogues`) when it falls within the event's tolerance window after the event;
every other fire is a false alarm and counts against precision. Delay is fire time minus event time:
for end of turn from the end of the user's speech (so it includes the silence the label rule waits
for), for barge-in from the start of the user's speech.

A *premature* response is a respond fire while the user is still in a turn: before the end of an
utterance, while speaking or in one of its within-turn pauses. It is the error a caller minds most
(the assistant talks over them), so it is counted apart from the other false alarms (after a cough,
in long silences), per end-of-turn event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from services.duplex.dialogues import RESPOND_AFTER, Dialogue, frame_end, frame_voice
from services.duplex.model import Decision, DuplexPredictor
from services.duplex.policy import DecisionPolicy

# Seconds after the event within which a fire counts as its detection.
TOLERANCE = {Decision.RESPOND_NOW: 1.5, Decision.STOP_SPEAKING: 1.2}
# A false alarm this soon after a cough/knock/breath is blamed on it.
BURST_BLAME_SECONDS = 1.2
_NAMES = {Decision.RESPOND_NOW: "end_of_turn", Decision.STOP_SPEAKING: "barge_in"}


@dataclass
class EventTally:
    events: int = 0
    fires: int = 0
    hits: int = 0
    burst_false_alarms: int = 0
    premature: int = 0
    delays: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        delays_ms = np.array(self.delays) * 1000.0
        return {
            "events": self.events,
            "fires": self.fires,
            "hits": self.hits,
            "false_alarms": self.fires - self.hits,
            "burst_false_alarms": self.burst_false_alarms,
            "premature": self.premature,
            "premature_per_event": self.premature / self.events if self.events else None,
            "precision": self.hits / self.fires if self.fires else None,
            "recall": self.hits / self.events if self.events else None,
            "mean_delay_ms": float(delays_ms.mean()) if len(delays_ms) else None,
            "p90_delay_ms": float(np.percentile(delays_ms, 90)) if len(delays_ms) else None,
        }


def tally_dialogue(dialogue: Dialogue, decisions: Sequence[Decision], tallies: dict[Decision, EventTally]) -> None:
    """Match one dialogue's fires to its events, adding to ``tallies`` (one per fired class)."""
    events = dialogue.events()
    for kind, tally in tallies.items():
        times = [e.time for e in events if e.kind == kind]
        matched = [False] * len(times)
        tally.events += len(times)
        for k, decision in enumerate(decisions):
            if decision != kind:
                continue
            tally.fires += 1
            t = frame_end(k)
            if kind == Decision.RESPOND_NOW and any(u.holds(t) for u in dialogue.utterances):
                tally.premature += 1  # the user is still in the turn: never a detection
                continue
            for i, event_time in enumerate(times):
                if not matched[i] and event_time <= t <= event_time + TOLERANCE[kind]:
                    matched[i] = True
                    tally.hits += 1
                    tally.delays.append(t - event_time)
                    break
            else:
                if any(start <= t <= end + BURST_BLAME_SECONDS for start, end in dialogue.bursts):
                    tally.burst_false_alarms += 1


def predict(model: DuplexPredictor, features: torch.Tensor, speaking: np.ndarray) -> torch.Tensor:
    """Probabilities [T, 3] of one dialogue."""
    with torch.inference_mode():
        logits = model(features.unsqueeze(0), torch.from_numpy(speaking).unsqueeze(0))[0]
    return logits.softmax(-1)


def evaluate(
    model: DuplexPredictor,
    dialogues: Sequence[Dialogue],
    features: Sequence[torch.Tensor],
    policy: DecisionPolicy | None = None,
    *,
    respond_after: float = RESPOND_AFTER,
) -> dict[str, Any]:
    """Event precision/recall/delay per kind and frame-level accuracy over ``dialogues``.

    ``respond_after``: the label rule the model was trained with (for the frame accuracy only; the
    events are the same for every rule).
    """
    probs = [predict(model, feats, d.speaking) for d, feats in zip(dialogues, features, strict=True)]
    return evaluate_probs(dialogues, probs, policy, respond_after=respond_after)


def evaluate_probs(
    dialogues: Sequence[Dialogue],
    probs: Sequence[torch.Tensor],
    policy: DecisionPolicy | None = None,
    *,
    respond_after: float = RESPOND_AFTER,
    silences: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """:func:`evaluate` from the predictor's probabilities ``[T, 3]`` per dialogue (a policy sweep reuses them,
    and the VAD's per-frame ``silences`` of :func:`frame_voice` if it has them)."""
    policy = policy or DecisionPolicy()
    tallies = {kind: EventTally() for kind in _NAMES}
    confusion = np.zeros((3, 3), dtype=np.int64)
    if silences is None:
        silences = [frame_voice(d)[1] for d in dialogues]
    for dialogue, p, silence in zip(dialogues, probs, silences, strict=True):
        decisions = policy.decide(p.numpy(), dialogue.speaking, silence)
        tally_dialogue(dialogue, decisions, tallies)
        np.add.at(confusion, (dialogue.labels(respond_after), p.argmax(-1).numpy()), 1)
    result: dict[str, Any] = {_NAMES[kind]: tally.summary() for kind, tally in tallies.items()}
    result["frame_accuracy"] = float(np.trace(confusion) / confusion.sum()) if confusion.sum() else None
    result["frame_confusion"] = confusion.tolist()  # rows: label, columns: argmax prediction
    result["dialogues"] = len(dialogues)
    result["noise_bursts"] = sum(len(d.bursts) for d in dialogues)
    result["seconds"] = float(sum(d.n_frames for d in dialogues) * frame_end(0))
    return result
