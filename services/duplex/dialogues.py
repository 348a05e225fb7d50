"""Synthetic full-duplex dialogues (espeak-ng speech on the user's microphone) and their frame labels.

A dialogue is what the listen path hears from one client: 16 kHz microphone audio (user speech,
coughs/knocks/breaths, low background noise; the assistant's own voice is assumed removed by the
client's echo cancellation) plus, per 120 ms frame, whether the assistant is speaking. Each
dialogue alternates user turns, pauses, assistant responses and barge-ins in random order.

Time base: frame ``k`` covers audio ``[0.12 k, 0.12 (k + 1))`` s and its decision is taken at the
frame's end ``t_k = 0.12 (k + 1)`` s, when its audio is available. A user *utterance* is one turn
of speech, from its first to its last audible sample (espeak output trimmed at -35 dB below the
clip's peak); pauses inside it are shorter than 400 ms. Coughs, knocks and breaths are never
utterances. The speaking flag changes only on frame boundaries, as the orchestrator sets it.

Label rules (each a function of the last 1.2 s, so a predictor with a 1.92 s window can learn them):

* ``RESPOND_NOW`` (1) when the assistant is silent at frame ``k`` and the latest utterance that
  started before ``t_k`` ended at ``e`` with ``a <= t_k - e < 1.2`` s: the user has been silent
  for ``a`` = ``respond_after`` (600 ms by default; ``perf.turn_taking`` also trains 400 and 200 ms)
  after a turn. With 600 ms that is the five frames ending 0.6-1.2 s after ``e`` (fewer if the
  assistant starts speaking); later silence is ``KEEP_LISTENING`` again, because a 2 s window cannot
  tell "long after a turn" from "no turn at all", and the policy acts on the first frame anyway.
* ``STOP_SPEAKING`` (2) when the assistant is speaking at frame ``k`` and an utterance that began
  while the assistant was speaking (a barge-in) started at ``b`` with ``0.24 <= t_k - b < 1.2`` s;
  in the synthetic timelines the flag drops 0.36-1.08 s after ``b``, as the speak path stops.
* ``KEEP_LISTENING`` (0) otherwise: while the user speaks, in within-turn pauses, around noise
  bursts, while the assistant speaks and the user listens, and in silence long after a turn.

Events for evaluation: an *end-of-turn* event at ``e`` for every utterance that produces at least
one ``RESPOND_NOW`` frame under the 600 ms rule (whatever rule a predictor was trained with, so
every predictor is scored on the same events), and a *barge-in* event at ``b`` for every barge-in
utterance that produces at least one ``STOP_SPEAKING`` frame.

Two generators: :func:`make_dialogues` (turns of 1-3 phrases, short questions, barge-ins) and
:func:`make_monologues` (long turns of 3-5 clauses joined by 0.2-0.4 s pauses, the pauses a
predictor must not answer in). Their sentences, voices and seeds differ between the train and
held-out splits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minmo_contracts.vad import EnergyVad
from services.duplex import corpus, synth

FRAME_SECONDS = 0.12
FRAME_SAMPLES = int(FRAME_SECONDS * synth.SAMPLE_RATE)
RESPOND_AFTER = 0.6
RESPOND_UNTIL = 1.2
STOP_AFTER = 0.24
STOP_UNTIL = 1.2
KEEP_LISTENING, RESPOND_NOW, STOP_SPEAKING = 0, 1, 2
_EPS = 1e-6  # frame end times are sums of floats; keep the interval ends stable
MONOLOGUE_PAUSE = (0.2, 0.4)  # seconds between the clauses of a monologue turn
SYSTEM_PROMPT_P = 0.75  # share of dialogues whose context opens with the session's instructions
# The orchestrator's default SessionConfig.instructions (orchestrator.converse.settings).
DEFAULT_INSTRUCTIONS = "You are a helpful voice assistant. Answer briefly."


@dataclass(frozen=True)
class Utterance:
    """One user turn: ``start``/``end`` in seconds; ``barge_in`` if the assistant spoke at ``start``.

    ``pauses``: the silences inside the turn (between its phrases or clauses), as (start, end).
    """

    start: float
    end: float
    barge_in: bool
    pauses: tuple[tuple[float, float], ...] = ()

    def holds(self, t: float) -> bool:
        """Whether the user is still in this turn at ``t`` (speaking or in one of its pauses)."""
        return self.start < t <= self.end + _EPS


@dataclass(frozen=True)
class Event:
    kind: int  # RESPOND_NOW (end of turn) or STOP_SPEAKING (barge-in)
    time: float  # end of the turn, or start of the barge-in, in seconds


@dataclass(frozen=True)
class Dialogue:
    audio: np.ndarray  # float32 [n_frames * FRAME_SAMPLES] at 16 kHz
    speaking: np.ndarray  # bool [n_frames]
    utterances: tuple[Utterance, ...]
    bursts: tuple[tuple[float, float], ...] = ()
    # What the backbone context holds before this user turn opens: (role, text) with role "system"
    # (the session's instructions, first), "user" or "assistant".
    history: tuple[tuple[str, str], ...] = ()

    @property
    def n_frames(self) -> int:
        return len(self.speaking)

    def labels(self, respond_after: float = RESPOND_AFTER) -> np.ndarray:
        return frame_labels(self.n_frames, self.utterances, self.speaking, respond_after)

    def events(self) -> list[Event]:
        """The events every predictor is scored on (the 600 ms rule's, see the module docstring)."""
        return label_events(self.utterances, self.labels())


def frame_end(k: int) -> float:
    return (k + 1) * FRAME_SECONDS


def frame_voice(dialogue: Dialogue) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: whether the session's VAD hears a voice in it, and its silence (ms) since the last voice.

    The runtime policy's silence floor and the speculation end point read exactly this detector
    (:class:`minmo_contracts.vad.EnergyVad`), so the evaluation runs it over the dialogue's audio:
    background noise, coughs and knocks count as voice here as they do in a session.
    """
    vad = EnergyVad()
    voiced = np.zeros(dialogue.n_frames, dtype=bool)
    silence = np.zeros(dialogue.n_frames, dtype=np.int64)
    for k in range(dialogue.n_frames):
        before = vad.last_voiced_ms
        vad.push(dialogue.audio[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES])
        voiced[k] = vad.last_voiced_ms != before
        silence[k] = vad.silence_ms
    return voiced, silence


def frame_labels(
    n_frames: int, utterances: tuple[Utterance, ...], speaking: np.ndarray, respond_after: float = RESPOND_AFTER
) -> np.ndarray:
    """Apply the label rules of the module docstring; int64 ``[n_frames]``."""
    if not 0.0 < respond_after < RESPOND_UNTIL:
        raise ValueError(f"respond_after must be in (0, {RESPOND_UNTIL}) s, got {respond_after}")
    labels = np.full(n_frames, KEEP_LISTENING, dtype=np.int64)
    for k in range(n_frames):
        t = frame_end(k)
        if speaking[k]:
            if any(u.barge_in and STOP_AFTER - _EPS <= t - u.start < STOP_UNTIL - _EPS for u in utterances):
                labels[k] = STOP_SPEAKING
            continue
        started = [u for u in utterances if u.start < t]
        if started and respond_after - _EPS <= t - started[-1].end < RESPOND_UNTIL - _EPS:
            labels[k] = RESPOND_NOW
    return labels


def label_events(utterances: tuple[Utterance, ...], labels: np.ndarray) -> list[Event]:
    """The end-of-turn and barge-in events that the labels express, in time order."""
    events = []
    times = np.array([frame_end(k) for k in range(len(labels))])
    for u in utterances:
        after_end = (times - u.end >= RESPOND_AFTER - _EPS) & (times - u.end < RESPOND_UNTIL - _EPS)
        if np.any(labels[after_end] == RESPOND_NOW):
            events.append(Event(RESPOND_NOW, u.end))
        after_start = (times - u.start >= STOP_AFTER - _EPS) & (times - u.start < STOP_UNTIL - _EPS)
        if u.barge_in and np.any(labels[after_start] == STOP_SPEAKING):
            events.append(Event(STOP_SPEAKING, u.start))
    return sorted(events, key=lambda e: e.time)


@dataclass
class _Timeline:
    """Places clips on a growing timeline and records what the labels need."""

    rng: np.random.Generator
    now: float = 0.0
    clips: list[tuple[float, np.ndarray]] = field(default_factory=list)
    speaking_changes: list[tuple[float, bool]] = field(default_factory=list)
    utterances: list[Utterance] = field(default_factory=list)
    bursts: list[tuple[float, float]] = field(default_factory=list)

    def speaking_at(self, t: float) -> bool:
        state = False
        for when, on in self.speaking_changes:
            if when <= t:
                state = on
        return state

    def set_speaking(self, on: bool, at: float | None = None) -> None:
        # The orchestrator switches the flag between frames, so changes sit on the frame grid.
        when = round((self.now if at is None else at) / FRAME_SECONDS) * FRAME_SECONDS
        self.speaking_changes.append((when, on))
        self.speaking_changes.sort(key=lambda c: c[0])

    def silence(self, seconds: float, burst_p: float = 0.0) -> None:
        if self.rng.random() < burst_p and seconds > 0.6:
            burst = synth.noise_burst(self.rng)
            length = len(burst) / synth.SAMPLE_RATE
            if length < seconds - 0.4:
                start = self.now + self.rng.uniform(0.15, seconds - length - 0.15)
                self.clips.append((start, burst))
                self.bursts.append((start, start + length))
        self.now += seconds

    def utterance(
        self,
        parts: list[np.ndarray],
        *,
        stop_speaking_after: float | None = None,
        pause: tuple[float, float] = (0.08, 0.38),
    ) -> None:
        """One turn made of ``parts`` separated by short pauses (uniform in ``pause``, < 400 ms)."""
        start = self.now
        barge_in = self.speaking_at(start + _EPS)
        pauses = []
        for i, clip in enumerate(parts):
            if i:
                gap = self.rng.uniform(*pause)
                pauses.append((self.now, self.now + gap))
                self.now += gap
            self.clips.append((self.now, clip))
            self.now += len(clip) / synth.SAMPLE_RATE
        self.utterances.append(Utterance(start, self.now, barge_in, tuple(pauses)))
        if stop_speaking_after is not None:
            self.set_speaking(False, at=start + stop_speaking_after)

    def render(self, history: tuple[tuple[str, str], ...]) -> Dialogue:
        n_frames = int(np.ceil(self.now / FRAME_SECONDS))
        audio = synth.background(self.rng, n_frames * FRAME_SAMPLES)
        for start, clip in self.clips:
            i = round(start * synth.SAMPLE_RATE)
            audio[i : i + len(clip)] += clip[: len(audio) - i]
        speaking = np.array([self.speaking_at(k * FRAME_SECONDS + _EPS) for k in range(n_frames)], dtype=bool)
        return Dialogue(np.clip(audio, -1.0, 1.0), speaking, tuple(self.utterances), tuple(self.bursts), history)


def _speaker(rng: np.random.Generator, split: corpus.Split, cache_dir: Path) -> Callable[[str], np.ndarray]:
    """``say(text)``: one voice, rate, pitch and microphone gain for the whole dialogue."""
    voices = corpus.voices(split)
    voice = voices[rng.integers(len(voices))]
    base_rate = int(rng.integers(*voice.rate))
    pitch = int(rng.integers(*voice.pitch))
    gain = rng.uniform(0.03, 0.12)  # speech RMS: the same speaker and microphone for the whole dialogue

    def say(text: str) -> np.ndarray:
        rate = base_rate + int(rng.integers(-10, 11))
        clip = synth.espeak(text, voice.name, rate, pitch, cache_dir)
        return clip * (gain / (np.sqrt(np.mean(clip**2)) + 1e-9))

    return say


def _history(rng: np.random.Generator, split: corpus.Split) -> tuple[tuple[str, str], ...]:
    # The listen path's context holds the conversation so far; vary it so features do not assume
    # the user turn sits at the start of the context.
    texts = corpus.phrases(split)
    return tuple(
        (role, texts[rng.integers(len(texts))])
        for _ in range(int(rng.integers(0, 3)))
        for role in ("user", "assistant")
    )


def _with_system(rng: np.random.Generator, history: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A Converse session's context opens with the session's instructions; ``minmo demo``'s does not."""
    if rng.random() < SYSTEM_PROMPT_P:
        return (("system", DEFAULT_INSTRUCTIONS), *history)
    return history


def _answer(tl: _Timeline, rng: np.random.Generator) -> None:
    """The assistant answers after the speak path's latency and speaks 0.8-3 s; the user then waits a little."""
    tl.silence(rng.uniform(0.84, 1.56), burst_p=0.2)
    tl.set_speaking(True)
    tl.silence(rng.uniform(0.8, 3.0), burst_p=0.5)


def make_dialogue(rng: np.random.Generator, split: corpus.Split, cache_dir: Path) -> Dialogue:
    """One random dialogue of roughly 8-25 s drawn from ``split``'s sentences and voices."""
    say = _speaker(rng, split, cache_dir)

    def turn(n_parts: int) -> list[np.ndarray]:
        texts = corpus.phrases(split)
        return [say(texts[rng.integers(len(texts))]) for _ in range(n_parts)]

    def barge_in() -> list[np.ndarray]:
        texts = corpus.barge_ins(split)
        parts = [say(texts[rng.integers(len(texts))])]
        return parts + turn(1) if rng.random() < 0.4 else parts

    tl = _Timeline(rng)
    tl.silence(rng.uniform(0.3, 1.5), burst_p=0.4)
    tl.utterance(turn(int(rng.integers(1, 4))))
    for _ in range(int(rng.integers(2, 4))):
        if rng.random() < 0.15:  # nobody answers: the user waits, then speaks again
            tl.silence(rng.uniform(1.6, 2.6), burst_p=0.4)
            tl.utterance(turn(int(rng.integers(1, 3))))
            continue
        _answer(tl, rng)
        if rng.random() < 0.6:  # barge-in; the speak path stops some frames after the decision
            tl.utterance(barge_in(), stop_speaking_after=rng.uniform(0.36, 1.08))
        else:  # the assistant finishes, the user takes the next turn
            tl.set_speaking(False)
            tl.silence(rng.uniform(0.4, 1.6), burst_p=0.4)
            tl.utterance(turn(int(rng.integers(1, 3))))
    tl.silence(rng.uniform(1.4, 2.2), burst_p=0.3)
    return tl.render(_history(rng, split))


def make_monologue(rng: np.random.Generator, split: corpus.Split, cache_dir: Path) -> Dialogue:
    """Two or three long turns, each 3-5 clauses of one story joined by 0.2-0.4 s pauses, answered in between.

    The pauses are where a predictor that waits too little answers while the user is still talking
    (the failure case of issue 12); the turn ends only after the last clause.
    """
    say = _speaker(rng, split, cache_dir)
    stories = corpus.monologues(split)
    tl = _Timeline(rng)
    tl.silence(rng.uniform(0.3, 1.5), burst_p=0.3)
    for i in range(int(rng.integers(2, 4))):
        if i:
            _answer(tl, rng)
            tl.set_speaking(False)
            tl.silence(rng.uniform(0.4, 1.6), burst_p=0.3)
        story = stories[rng.integers(len(stories))]
        n = int(rng.integers(3, min(5, len(story)) + 1))
        first = int(rng.integers(0, len(story) - n + 1))
        tl.utterance([say(clause) for clause in story[first : first + n]], pause=MONOLOGUE_PAUSE)
    tl.silence(rng.uniform(1.4, 2.2), burst_p=0.3)
    return tl.render(_history(rng, split))


def make_dialogues(n: int, split: corpus.Split, seed: int, cache_dir: Path | None = None) -> list[Dialogue]:
    return _make(make_dialogue, n, split, seed, cache_dir)


def make_monologues(n: int, split: corpus.Split, seed: int, cache_dir: Path | None = None) -> list[Dialogue]:
    return _make(make_monologue, n, split, seed, cache_dir)


def _make(
    make: Callable[[np.random.Generator, corpus.Split, Path], Dialogue],
    n: int,
    split: corpus.Split,
    seed: int,
    cache_dir: Path | None,
) -> list[Dialogue]:
    rng = np.random.default_rng(seed)
    # Its own generator, so that adding the system prompt left every dialogue's audio as it was.
    system_rng = np.random.default_rng([seed, 1])
    cache = cache_dir or synth.default_cache_dir()
    dialogues = []
    for _ in range(n):
        d = make(rng, split, cache)
        dialogues.append(dataclasses.replace(d, history=_with_system(system_rng, d.history)))
    return dialogues
