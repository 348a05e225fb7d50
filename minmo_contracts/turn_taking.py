"""The duplex predictor's classes and the runtime decision policy over its probabilities (numpy only).

The predictor scores every 120 ms frame as KEEP_LISTENING / RESPOND_NOW / STOP_SPEAKING; the
orchestrator must act once per event: start one response at the end of a turn, stop the assistant
once on a barge-in. So a class *fires* when its probability crosses its threshold while the
assistant's state allows it (respond only while the assistant is silent, stop only while it speaks),
and cannot fire again until its probability has fallen below ``rearm_threshold`` (hysteresis against
flicker around the threshold). The predictor's evaluation (``services.duplex.evaluate``) uses this
same policy, so its figures are the runtime's; the orchestrator uses it without torch.

*Respond now* also waits for ``min_silence_ms`` of silence since the user's last voice (the session's
VAD; the evaluation reads the dialogue's own timings). A pause inside a turn is short (0.2-0.4 s in
the held-out monologues) and the predictor, which cannot count silent frames reliably, sometimes
fires in one; the floor makes that impossible at no cost to a real turn end, which the predictor
marks later anyway (``docs/turn-taking.md`` measures both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Decision(IntEnum):
    KEEP_LISTENING = 0
    RESPOND_NOW = 1
    STOP_SPEAKING = 2


NUM_CLASSES = len(Decision)
MIN_SILENCE_MS = 0


@dataclass(frozen=True)
class DecisionPolicy:
    respond_threshold: float = 0.5
    stop_threshold: float = 0.5
    rearm_threshold: float = 0.3
    min_silence_ms: int = MIN_SILENCE_MS  # respond only after this much silence since the user's voice

    def __post_init__(self) -> None:
        for name in ("respond_threshold", "stop_threshold"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"DecisionPolicy.{name} must be in (0, 1), got {value}")
            if self.rearm_threshold > value:
                raise ValueError(f"DecisionPolicy.rearm_threshold {self.rearm_threshold} exceeds {name} {value}")
        if self.min_silence_ms < 0:
            raise ValueError(f"DecisionPolicy.min_silence_ms must be >= 0, got {self.min_silence_ms}")

    def new_gate(self) -> DecisionGate:
        return DecisionGate(self)

    def decide(
        self,
        probs: Sequence[Sequence[float]] | np.ndarray,
        speaking: Sequence[bool] | np.ndarray,
        silence_ms: Sequence[int] | np.ndarray | None = None,
    ) -> list[Decision]:
        """Decisions for a whole sequence: ``probs`` [T, 3], ``speaking`` [T], ``silence_ms`` [T] (a fresh gate)."""
        gate = self.new_gate()
        rows = np.asarray(probs, dtype=np.float64)
        flags = np.asarray(speaking, dtype=bool).reshape(-1)
        silences = [None] * len(flags) if silence_ms is None else [int(x) for x in np.asarray(silence_ms).reshape(-1)]
        return [gate.step(p, bool(s), q) for p, s, q in zip(rows, flags, silences, strict=True)]


class DecisionGate:
    """The policy's per-stream state: which actions are armed."""

    def __init__(self, policy: DecisionPolicy) -> None:
        self.policy = policy
        self._armed = {Decision.RESPOND_NOW: True, Decision.STOP_SPEAKING: True}

    def step(self, probs: Sequence[float] | np.ndarray, speaking: bool, silence_ms: int | None = None) -> Decision:
        """Decision for one frame's probabilities [3] (any array-like, a CPU tensor too) given the assistant's state
        and the silence since the user's last voice (None: unknown, no floor)."""
        p = np.asarray(probs, dtype=np.float64)
        if p.shape != (NUM_CLASSES,):
            raise ValueError(f"probs must be [3] (keep, respond, stop), got {tuple(p.shape)}")
        for action in self._armed:
            if p[action] < self.policy.rearm_threshold:
                self._armed[action] = True
        action = Decision.STOP_SPEAKING if speaking else Decision.RESPOND_NOW
        threshold = self.policy.stop_threshold if speaking else self.policy.respond_threshold
        if action == Decision.RESPOND_NOW and silence_ms is not None and silence_ms < self.policy.min_silence_ms:
            return Decision.KEEP_LISTENING  # still armed: it fires once the silence is long enough
        if self._armed[action] and p[action] > threshold:
            self._armed[action] = False
            return action
        return Decision.KEEP_LISTENING
