"""Which backbone context each frame of a dialogue is heard in, as a Converse session would lay it out.

The predictor reads the backbone's states at the speech positions, and those depend on everything
before them in the context. A session does not keep one growing user turn: at a respond decision it
closes the turn at its end point (``<|audio_eos|><|im_end|>``) and listens on a *fork* (a new user
turn opened after the closed one) while the assistant answers; when the answer ends the assistant's
turn joins the context and the next user turn opens after it; at a barge-in the cut answer joins
the context and the audio heard on the fork is appended again after it
(``orchestrator.converse.session``). With the seeded random backbone the difference hardly showed;
a trained backbone reads its context, so a predictor trained on one long turn missed later turns.

The dialogue's timeline stands in for the predictor's own decisions: a turn is decided
``DECISION_AFTER`` after it ends (the 600 ms labels' first frame), its end point is
``END_POINT_AFTER`` after its end (the session's 240 ms speculation end point), a speaking run of the
assistant is the answer, and a barge-in during a run interrupts it where the run ends.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from minmo_contracts.prompt import ChatPrompt
from minmo_contracts.tokenizer import Tokenizer
from services.duplex.dialogues import FRAME_SECONDS, RESPOND_AFTER, Dialogue

DECISION_AFTER = RESPOND_AFTER
END_POINT_AFTER = 0.24
# Text segments, and ("speech", first_row, end_row) for rows of the dialogue's encoder output.
Segment = list[int] | tuple[str, int, int]


@dataclass(frozen=True)
class Piece:
    """Frames ``[record_from, record_to)`` are heard after ``prefix``, as rows ``[rows_from, record_to)``."""

    prefix: tuple[Segment, ...]
    rows_from: int
    record_from: int
    record_to: int


def _frame_at(seconds: float) -> int:
    """The first frame whose end is at or after ``seconds``."""
    return max(0, math.ceil(seconds / FRAME_SECONDS - 1e-6) - 1)


def _runs(speaking: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], speaking.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def layout(dialogue: Dialogue, prompt: ChatPrompt, tokenizer: Tokenizer, replies: tuple[str, ...]) -> list[Piece]:
    """The contexts the dialogue's frames are heard in, in frame order, covering every frame once.

    ``replies``: the texts the assistant's turns may hold (one is picked per answer, seeded by the
    dialogue's audio, so the layout is a function of the dialogue).
    """
    history = dialogue.history
    system = history[0][1] if history and history[0][0] == "system" else None
    turns = [(role, text) for role, text in history if role != "system"]
    prefix: list[Segment] = list(prompt.system(system)) if system else []  # type: ignore[arg-type]
    for role, text in turns:
        segment = prompt.user_text(text) if role == "user" else prompt.assistant_turn(tokenizer.encode(text))
        prefix.extend(segment)  # type: ignore[arg-type]
    rng = np.random.default_rng(zlib.crc32(dialogue.audio[:4096].tobytes()))
    opening = prompt.user_speech_open()
    pieces: list[Piece] = []
    open_frame = cursor = 0  # the main context's user turn starts at open_frame; frames before cursor are done
    for start, end in _runs(dialogue.speaking):
        answered = [
            u for u in dialogue.utterances if u.end < start * FRAME_SECONDS and not u.holds(start * FRAME_SECONDS)
        ]
        if not answered or start <= cursor:
            continue  # not an answer to a turn heard here: the context goes on as it is
        last = answered[-1]
        decision = min(_frame_at(last.end + DECISION_AFTER), start - 1)
        end_point = min(_frame_at(last.end + END_POINT_AFTER), decision)
        if decision < cursor or end_point < open_frame:
            continue
        pieces.append(Piece((*prefix, opening), open_frame, cursor, decision + 1))
        closed: list[Segment] = [opening, ("speech", open_frame, end_point + 1), prompt.user_speech_close()]
        pieces.append(Piece((*prefix, *closed, opening), decision + 1, decision + 1, end))
        reply = tokenizer.encode(replies[int(rng.integers(len(replies)))])
        barge_in = any(
            u.barge_in and start * FRAME_SECONDS <= u.start < end * FRAME_SECONDS for u in dialogue.utterances
        )
        if barge_in:
            reply = reply[: int(rng.integers(0, len(reply) + 1))]  # what was played before the cut
        prefix = [*prefix, *closed, *prompt.assistant_turn(reply)]  # type: ignore[list-item]
        open_frame = decision + 1 if barge_in else end  # a barge-in's turn starts with the audio heard on the fork
        cursor = end
    pieces.append(Piece((*prefix, opening), open_frame, cursor, dialogue.n_frames))
    return [p for p in pieces if p.record_to > p.record_from]
