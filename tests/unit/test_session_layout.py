"""The duplex training features hear each frame in the context a Converse session would hear it in."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from minmo_contracts.prompt import ChatPrompt
from minmo_contracts.tokenizer import SmokeByteTokenizer
from services.duplex.dialogues import FRAME_SECONDS, make_dialogues
from services.duplex.features import smoke_extractor
from services.duplex.session_layout import layout

REPLIES = ("Sure.", "It is sunny and warm today.")


@pytest.fixture(scope="module")
def dialogues(tmp_path_factory: pytest.TempPathFactory) -> list:
    return make_dialogues(12, "heldout", seed=5, cache_dir=tmp_path_factory.mktemp("speech"))


def test_every_frame_is_heard_once_and_answers_move_the_context_on(dialogues: list) -> None:
    tok = SmokeByteTokenizer()
    prompt = ChatPrompt(tok)
    barge_ins = 0
    for d in dialogues:
        pieces = layout(d, prompt, tok, REPLIES)
        covered = np.zeros(d.n_frames, dtype=int)
        for piece in pieces:
            covered[piece.record_from : piece.record_to] += 1
            assert piece.rows_from <= piece.record_from and piece.prefix[-1] == prompt.user_speech_open()
        assert (covered == 1).all()
        assert pieces == layout(d, prompt, tok, REPLIES), "the layout is a function of the dialogue"
        for before, after in itertools.pairwise(pieces):
            # A later context holds the earlier one's closed user turn (its speech rows), never fewer segments.
            assert len(after.prefix) > len(before.prefix)
            closed_turns = [s for s in after.prefix if isinstance(s, tuple)]
            assert closed_turns and closed_turns[-1][2] <= after.record_from
        for u in d.utterances:
            if not u.barge_in:
                continue
            # After the cut, the barge-in's first words (heard on the fork) are heard again in the context.
            barge_ins += any(p.rows_from <= u.start / FRAME_SECONDS < p.record_from for p in pieces)
    assert barge_ins >= 3


def test_the_first_turn_is_heard_as_one_listen_session(dialogues: list) -> None:
    extractor = smoke_extractor()
    d = dialogues[0]
    first = layout(d, extractor.prompt, extractor.tokenizer, REPLIES)[0]
    whole = extractor.dialogue(d)
    single = extractor(d.audio, d.history)
    assert whole.shape == single.shape == (d.n_frames, 256)
    torch.testing.assert_close(whole[: first.record_to], single[: first.record_to], atol=1e-4, rtol=0)
    # After the first answer the context differs from one long user turn, so the features do too.
    assert not torch.allclose(whole[first.record_to :], single[first.record_to :], atol=1e-2)
