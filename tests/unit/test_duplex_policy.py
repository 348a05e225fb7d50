"""Runtime decision policy: thresholds, the speaking gate, and one fire per event (hysteresis)."""

from __future__ import annotations

import pytest
import torch

from services.duplex import Decision, DecisionPolicy

K, R, S = Decision.KEEP_LISTENING, Decision.RESPOND_NOW, Decision.STOP_SPEAKING


def _p(respond: float, stop: float = 0.0) -> torch.Tensor:
    return torch.tensor([1.0 - respond - stop, respond, stop])


def test_respond_fires_once_per_crossing() -> None:
    gate = DecisionPolicy().new_gate()
    steps = [0.1, 0.45, 0.6, 0.9, 0.7, 0.4, 0.8, 0.2, 0.55]
    got = [gate.step(_p(p), speaking=False) for p in steps]
    # 0.4 is above the 0.3 re-arm level, so the second rise to 0.8 does not fire again; 0.2 re-arms.
    assert got == [K, K, R, K, K, K, K, K, R]


def test_threshold_is_strict() -> None:
    assert DecisionPolicy().new_gate().step(_p(0.5), speaking=False) == K


def test_speaking_flag_gates_the_actions() -> None:
    gate = DecisionPolicy().new_gate()
    assert gate.step(_p(0.9), speaking=True) == K, "never respond while the assistant speaks"
    assert gate.step(_p(0.0, stop=0.9), speaking=False) == K, "nothing to stop while silent"
    assert gate.step(_p(0.0, stop=0.9), speaking=True) == S
    assert gate.step(_p(0.0, stop=0.95), speaking=True) == K
    # Respond was never fired above, so it is still armed once the assistant is silent.
    assert gate.step(_p(0.9), speaking=False) == R


def test_actions_are_armed_independently() -> None:
    gate = DecisionPolicy().new_gate()
    assert gate.step(_p(0.0, stop=0.8), speaking=True) == S
    assert gate.step(_p(0.6, stop=0.35), speaking=False) == R
    assert gate.step(_p(0.0, stop=0.8), speaking=True) == K  # stop not re-armed: it never fell below 0.3
    assert gate.step(_p(0.0, stop=0.2), speaking=True) == K
    assert gate.step(_p(0.0, stop=0.8), speaking=True) == S


def test_custom_thresholds() -> None:
    policy = DecisionPolicy(respond_threshold=0.8, stop_threshold=0.3, rearm_threshold=0.1)
    gate = policy.new_gate()
    assert gate.step(_p(0.7), speaking=False) == K
    assert gate.step(_p(0.85), speaking=False) == R
    assert gate.step(_p(0.0, stop=0.35), speaking=True) == S


def test_decide_over_a_sequence_matches_a_gate() -> None:
    probs = torch.stack([_p(0.1), _p(0.7), _p(0.7), _p(0.0, 0.6), _p(0.0, 0.1), _p(0.0, 0.6)])
    speaking = torch.tensor([False, False, False, True, True, True])
    assert DecisionPolicy().decide(probs, speaking) == [K, R, K, S, K, S]


def test_invalid_policies_and_inputs() -> None:
    with pytest.raises(ValueError, match="respond_threshold must be in"):
        DecisionPolicy(respond_threshold=1.0)
    with pytest.raises(ValueError, match=r"rearm_threshold 0\.6 exceeds stop_threshold 0\.5"):
        DecisionPolicy(rearm_threshold=0.6, respond_threshold=0.7)
    with pytest.raises(ValueError, match="probs must be"):
        DecisionPolicy().new_gate().step(torch.zeros(2), speaking=False)


def test_respond_waits_for_the_silence_floor_and_stop_does_not() -> None:
    import numpy as np

    respond, stop = np.array([0.1, 0.9, 0.0]), np.array([0.1, 0.0, 0.9])
    gate = DecisionPolicy(min_silence_ms=480).new_gate()
    assert gate.step(respond, False, 360) == Decision.KEEP_LISTENING, "a pause inside the turn: held back"
    assert gate.step(respond, False, 480) == Decision.RESPOND_NOW, "still armed: fires once the floor is reached"
    assert gate.step(respond, False, 600) == Decision.KEEP_LISTENING, "once per turn end"
    assert gate.step(stop, True, 0) == Decision.STOP_SPEAKING, "a barge-in is never floored"
    assert DecisionPolicy(min_silence_ms=480).new_gate().step(respond, False) == Decision.RESPOND_NOW, "unknown: none"
    decided = DecisionPolicy(min_silence_ms=240).decide([respond] * 3, [False] * 3, [120, 240, 360])
    assert decided == [Decision.KEEP_LISTENING, Decision.RESPOND_NOW, Decision.KEEP_LISTENING]
    with pytest.raises(ValueError, match="min_silence_ms must be >= 0"):
        DecisionPolicy(min_silence_ms=-1)
