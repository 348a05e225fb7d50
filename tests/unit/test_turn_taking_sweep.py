"""perf.turn_taking's arithmetic on a hand-made dialogue: premature responses, delays, the default rule, speculation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perf.turn_taking_sweep import DefaultRule, Run, pick_default, policy_point, speculation_point
from services.duplex.dialogues import FRAME_SAMPLES, Dialogue, Utterance


def _dialogue() -> Dialogue:
    """A 0.3-2.5 s turn with a pause at 1.2-1.55 s; the assistant never speaks (frames of 120 ms)."""
    turn = Utterance(0.3, 2.5, barge_in=False, pauses=((1.2, 1.55),))
    audio = np.zeros(40 * FRAME_SAMPLES, np.float32)
    for start, end in ((0.3, 1.2), (1.55, 2.5)):  # a loud tone where the user speaks: the VAD hears it
        audio[int(start * 16_000) : int(end * 16_000)] = 0.1
    return Dialogue(audio, np.zeros(40, dtype=bool), (turn,))


def _probs(respond: dict[int, float]) -> torch.Tensor:
    p = torch.zeros(40, 3)
    for k, value in respond.items():
        p[k, 1] = value
    p[:, 0] = 1 - p[:, 1]
    return p


# Frames 10-11 (1.32, 1.44 s) are in the pause, 12 (1.56 s) is speech again; the turn ends at 2.5 s.
EAGER = {10: 0.35, 11: 0.45, 21: 0.3, 22: 0.55, 23: 0.8, 24: 0.9, 25: 0.9}  # 200 ms labels
PATIENT = {k + 3: v for k, v in EAGER.items() if k > 20}  # 600 ms labels: no rise in the pause, later at the end


def _runs() -> tuple[Run, Run]:
    d = _dialogue()
    return Run(600, [d], [_probs(PATIENT)], [True]), Run(200, [d], [_probs(EAGER)], [True])


def test_policy_point_counts_premature_responses_and_delays() -> None:
    _patient, eager = _runs()
    low = policy_point(eager, 0.4)["all"]
    assert (low["premature"], low["recall"], low["mean_delay_ms"]) == (1, 1.0, pytest.approx(260.0))
    mid = policy_point(eager, 0.5)["all"]
    assert (mid["premature"], mid["mean_delay_ms"]) == (0, pytest.approx(260.0))
    high = policy_point(eager, 0.7)
    assert high["all"]["mean_delay_ms"] == pytest.approx(380.0) and high["monologues"]["turns"] == 1
    assert high["dialogues"]["turns"] == 0


def test_a_silence_floor_holds_back_the_answer_in_the_pause() -> None:
    _patient, eager = _runs()
    # 0.4 fires at 1.44 s, 240 ms into the pause; with a 360 ms floor it waits for the turn's end, where
    # 2.76 s (P 0.55) is 260 ms of silence and 2.88 s (P 0.8) is 380 ms.
    floored = policy_point(eager, 0.4, min_silence_ms=360)
    assert floored["min_silence_ms"] == 360
    assert (floored["all"]["premature"], floored["all"]["recall"]) == (0, 1.0)
    assert floored["all"]["mean_delay_ms"] == pytest.approx(380.0)


def test_the_default_is_the_fastest_point_no_worse_than_today() -> None:
    patient, eager = _runs()
    points = [policy_point(run, t) for run in (patient, eager) for t in (0.4, 0.5, 0.7)]
    baseline, chosen = pick_default(points, DefaultRule())
    assert (baseline["respond_after_ms"], baseline["threshold"]) == (600, 0.5)
    assert baseline["all"]["mean_delay_ms"] == pytest.approx(620.0)
    # (200 ms, 0.4) is faster still but answers in the pause: not eligible.
    assert (chosen["respond_after_ms"], chosen["threshold"]) == (200, 0.5)
    # A gain under min_gain_ms keeps today's default.
    _, kept = pick_default(points, DefaultRule(min_gain_ms=400.0))
    assert kept is baseline


def test_speculation_replays_the_runtime_end_point_rule() -> None:
    _patient, eager = _runs()
    early = speculation_point(eager, 0.5, silence_ms=240, start=0.2)
    # P > 0.2 in the pause (1.32 s) starts one, the voice at 1.56 s discards it; 140 ms after the turn's
    # last word (2.64 s, P 0.3) another starts and the decision commits it at 2.76 s.
    assert (early["starts"], early["committed"], early["discarded"], early["discarded_user_went_on"]) == (2, 1, 1, 1)
    assert early["lead_ms_p50"] == pytest.approx(120.0) and early["wasted_ms_per_discard"] == pytest.approx(240.0)
    late = speculation_point(eager, 0.5, silence_ms=240, start=0.4)
    # 1.44 s (P 0.45) starts in the pause; at the end the 240 ms silence and the decision fall on one frame.
    assert (late["starts"], late["committed"], late["lead_ms_p50"]) == (2, 1, pytest.approx(0.0))
    none = speculation_point(eager, 0.5, silence_ms=360, start=0.6)
    assert (none["starts"], none["decisions_without_speculation"], none["lead_ms_p50"]) == (0, 1, None)


def test_a_speculation_never_reached_by_a_decision_is_dropped_after_the_hold_limit() -> None:
    _patient, eager = _runs()
    quiet = Run(200, eager.dialogues, [_probs({10: 0.35})], [True])  # no decision ever
    point = speculation_point(quiet, 0.5, silence_ms=2000, start=0.2, max_hold_s=0.1)
    # One starts in the pause (P 0.35 at 1.32 s), one 2 s after the turn (4.56 s): both dropped a frame
    # later by the hold limit, before the user's voice could come back.
    assert (point["starts"], point["committed"], point["discarded"], point["discarded_user_went_on"]) == (2, 0, 2, 0)
    assert point["wasted_ms_per_discard"] == pytest.approx(120.0)
