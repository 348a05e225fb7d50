"""Label rules on a hand-made timeline, event matching, and the synthetic dialogue generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.duplex import Decision
from services.duplex.dialogues import (
    FRAME_SAMPLES,
    Dialogue,
    Event,
    Utterance,
    frame_end,
    make_dialogues,
    make_monologues,
)
from services.duplex.evaluate import EventTally, tally_dialogue

K, R, S = Decision.KEEP_LISTENING, Decision.RESPOND_NOW, Decision.STOP_SPEAKING


def _timeline() -> Dialogue:
    """4.8 s: a turn 0.3-1.5 s; the assistant speaks from frame 22 (2.64 s) to frame 29; the user barges
    in 3.0-3.6 s; a noise-like gap (no utterance) never counts."""
    speaking = np.zeros(40, dtype=bool)
    speaking[22:30] = True
    utterances = (Utterance(0.3, 1.5, barge_in=False), Utterance(3.0, 3.6, barge_in=True))
    return Dialogue(np.zeros(40 * FRAME_SAMPLES, np.float32), speaking, utterances, bursts=((1.8, 1.9),))


def test_label_rules_on_a_hand_made_timeline() -> None:
    labels = _timeline().labels()
    expected = np.zeros(40, dtype=np.int64)
    # Respond: frame ends t with 0.6 <= t - 1.5 < 1.2 -> t in [2.1, 2.7) -> frames 17..21 (t = 2.16..2.64);
    # frame 21 ends at 2.64 but is still silent (speaking starts with frame 22).
    expected[17:22] = R
    # Stop: 0.24 <= t - 3.0 < 1.2 while speaking -> frames 26..29 (t = 3.24..3.6); speaking ends after 29.
    expected[26:30] = S
    # Respond after the barge-in turn: t - 3.6 in [0.6, 1.2) -> t in [4.2, 4.8) -> frames 34..38.
    expected[34:39] = R
    assert labels.tolist() == expected.tolist()


def test_respond_waits_for_the_assistant_to_fall_silent() -> None:
    timeline = _timeline()
    speaking = timeline.speaking.copy()
    speaking[17:] = True  # the assistant started right after the turn: no respond, and no stop (no barge-in)
    labels = Dialogue(timeline.audio, speaking, timeline.utterances[:1]).labels()
    assert labels[:17].tolist() == [K] * 17 and set(labels[17:].tolist()) == {K}


def test_a_short_pause_between_utterances_never_responds() -> None:
    speaking = np.zeros(30, dtype=bool)
    utterances = (Utterance(0.2, 1.0, False), Utterance(1.5, 2.0, False))  # 500 ms gap
    labels = Dialogue(np.zeros(30 * FRAME_SAMPLES, np.float32), speaking, utterances).labels()
    assert np.flatnonzero(labels == R).tolist() == [21, 22, 23, 24, 25]  # only after the second: t in [2.6, 3.2)


def test_events_follow_the_labels() -> None:
    assert _timeline().events() == [Event(R, 1.5), Event(S, 3.0), Event(R, 3.6)]


def test_event_matching_counts_hits_false_alarms_and_delays() -> None:
    decisions = [K] * 40
    decisions[5] = R  # 0.72 s, mid-turn: false alarm (it would cut the user off)
    decisions[18] = R  # 2.28 s: end-of-turn at 1.5 s detected, delay 780 ms
    decisions[19] = R  # 2.40 s: a second fire for the same event is a false alarm
    decisions[36] = R  # 4.44 s: end-of-turn at 3.6 s detected, delay 840 ms
    decisions[27] = S  # 3.36 s: barge-in at 3.0 s detected, delay 360 ms
    decisions[28] = S  # duplicate: false alarm
    tallies = {R: EventTally(), S: EventTally()}
    tally_dialogue(_timeline(), decisions, tallies)
    respond, stop = tallies[R].summary(), tallies[S].summary()
    assert (respond["events"], respond["fires"], respond["hits"], respond["false_alarms"]) == (2, 4, 2, 2)
    assert respond["precision"] == pytest.approx(0.5) and respond["recall"] == pytest.approx(1.0)
    assert respond["mean_delay_ms"] == pytest.approx(810.0)
    assert (stop["events"], stop["fires"], stop["hits"]) == (1, 2, 1)
    assert stop["precision"] == pytest.approx(0.5) and stop["mean_delay_ms"] == pytest.approx(360.0)


def test_a_fire_after_the_tolerance_window_is_a_miss_and_a_false_alarm() -> None:
    decisions = [K] * 40
    decisions[28] = R  # 3.48 s: 1.98 s after the end of turn at 1.5 s (tolerance 1.5 s), before the next one
    tallies = {R: EventTally()}
    tally_dialogue(_timeline(), decisions, tallies)
    summary = tallies[R].summary()
    assert (summary["hits"], summary["false_alarms"], summary["recall"]) == (0, 1, 0.0)
    assert summary["mean_delay_ms"] is None


def test_false_alarms_right_after_a_noise_burst_are_blamed_on_it() -> None:
    dialogue = Dialogue(
        np.zeros(40 * FRAME_SAMPLES, np.float32),
        np.zeros(40, dtype=bool),
        (Utterance(0.3, 1.0, barge_in=False),),
        bursts=((2.5, 2.7),),
    )
    decisions = [K] * 40
    decisions[10] = R  # 1.32 s: the end of turn at 1.0 s, detected
    decisions[22] = R  # 2.76 s: outside the 1.5 s tolerance, 60 ms after a cough: blamed on the burst
    decisions[35] = R  # 4.32 s: a false alarm 1.6 s after the burst, not blamed on it
    tallies = {R: EventTally()}
    tally_dialogue(dialogue, decisions, tallies)
    summary = tallies[R].summary()
    assert (summary["hits"], summary["false_alarms"], summary["burst_false_alarms"]) == (1, 2, 1)


def test_generated_dialogues_are_consistent(tmp_path: Path) -> None:
    dialogues = make_dialogues(2, "heldout", seed=7, cache_dir=tmp_path)
    again = make_dialogues(2, "heldout", seed=7, cache_dir=tmp_path)  # second time from the clip cache
    for d, e in zip(dialogues, again, strict=True):
        assert np.array_equal(d.audio, e.audio) and np.array_equal(d.speaking, e.speaking)
        assert d.audio.dtype == np.float32 and len(d.audio) == d.n_frames * FRAME_SAMPLES
        assert np.abs(d.audio).max() <= 1.0
        starts = [u.start for u in d.utterances]
        assert starts == sorted(starts)
        assert all(a.end < b.start for a, b in zip(d.utterances, d.utterances[1:], strict=False))
        kinds = {e.kind for e in d.events()}
        assert R in kinds
        # A barge-in is exactly an utterance that starts while the flag is on.
        for u in d.utterances:
            assert u.barge_in == bool(d.speaking[int(u.start / frame_end(0))])


@pytest.mark.parametrize(
    ("respond_after", "first_turn", "after_barge_in"),
    [(0.6, range(17, 22), range(34, 39)), (0.4, range(15, 22), range(33, 39)), (0.2, range(14, 22), range(31, 39))],
)
def test_shorter_end_of_turn_silence_starts_respond_labels_earlier(
    respond_after: float, first_turn: range, after_barge_in: range
) -> None:
    labels = _timeline().labels(respond_after)
    assert np.flatnonzero(labels == R).tolist() == [*first_turn, *after_barge_in]
    assert np.flatnonzero(labels == S).tolist() == list(range(26, 30))  # barge-in labels do not change


def test_events_are_the_same_whatever_the_label_silence() -> None:
    # Every predictor is scored on the 600 ms rule's events, so their figures compare.
    assert _timeline().events() == [Event(R, 1.5), Event(S, 3.0), Event(R, 3.6)]
    with pytest.raises(ValueError, match="respond_after"):
        _timeline().labels(1.2)


def _paused_turn() -> Dialogue:
    """A 0.3-2.5 s turn with a 0.35 s pause at 1.2-1.55 s inside it."""
    turn = Utterance(0.3, 2.5, barge_in=False, pauses=((1.2, 1.55),))
    return Dialogue(np.zeros(40 * FRAME_SAMPLES, np.float32), np.zeros(40, dtype=bool), (turn,))


def test_a_fire_inside_a_turn_is_premature_not_a_detection() -> None:
    dialogue = _paused_turn()
    assert dialogue.utterances[0].holds(1.44) and dialogue.utterances[0].holds(2.5)
    assert not dialogue.utterances[0].holds(0.3) and not dialogue.utterances[0].holds(2.52)
    decisions = [K] * 40
    decisions[11] = R  # 1.44 s: in the within-turn pause -> premature
    decisions[20] = R  # 2.52 s: 20 ms after the end of the turn: a detection (delay 20 ms), not premature
    decisions[30] = R  # 3.72 s: a false alarm in silence, not premature
    tallies = {R: EventTally()}
    tally_dialogue(dialogue, decisions, tallies)
    summary = tallies[R].summary()
    assert (summary["fires"], summary["hits"], summary["premature"], summary["false_alarms"]) == (3, 1, 1, 2)
    assert summary["premature_per_event"] == pytest.approx(1.0)
    assert summary["mean_delay_ms"] == pytest.approx(20.0)


def test_monologues_join_held_out_clauses_with_short_pauses(tmp_path: Path) -> None:
    from services.duplex import corpus

    monologues = make_monologues(2, "heldout", seed=5, cache_dir=tmp_path)
    for d in monologues:
        assert 2 <= len(d.utterances) <= 3 and not any(u.barge_in for u in d.utterances)
        for u in d.utterances:
            assert 2 <= len(u.pauses) <= 4  # 3-5 clauses
            assert all(0.2 <= end - start <= 0.4 for start, end in u.pauses)
            assert all(u.start < start < end < u.end for start, end in u.pauses)
        assert [e.time for e in d.events() if e.kind == R] == [u.end for u in d.utterances]
        # No respond label inside a pause: the rule counts from the end of the whole turn.
        labels = d.labels(0.2)
        for u in d.utterances:
            inside = [k for k in range(d.n_frames) if u.holds(frame_end(k))]
            assert not np.any(labels[inside] == R)
    held_out = {c for story in corpus.monologues("heldout") for c in story}
    trained = {c for story in corpus.monologues("train") for c in story} | set(corpus.phrases("train"))
    assert not held_out & trained
