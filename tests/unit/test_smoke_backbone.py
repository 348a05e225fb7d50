"""The shipped smoke backbone answers spoken questions with short sentences, on voices it never heard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minmo_contracts.prompt import ChatPrompt, SpeechTurn, TextTurn
from minmo_contracts.tokenizer import IM_END, SmokeByteTokenizer
from services.backbone import build_smoke
from services.backbone.smoke import SMOKE_CHECKPOINT, load_trained
from services.backbone.smoke.qa import QA
from services.backbone.smoke.train import (
    IGNORE,
    Conversation,
    ConversationSampler,
    TrainSettings,
    reply_to,
    speak,
    training_voices,
)
from services.duplex import corpus
from services.duplex.dialogues import DEFAULT_INSTRUCTIONS
from services.encoder import build_smoke as build_smoke_encoder
from services.smoke_seeds import BACKBONE_SEED, ENCODER_SEED

PROMPT = ChatPrompt(SmokeByteTokenizer())


def test_the_checkpoint_is_trained_from_the_seeded_backbone_and_records_its_scores() -> None:
    trained, seeded = load_trained(), build_smoke(BACKBONE_SEED)
    assert trained.config == seeded.config
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, seeded.model.layers[0].mlp.up_proj.weight)
    scores = json.loads((SMOKE_CHECKPOINT / "metrics.json").read_text())["heldout_voices"]
    assert scores["spoken_answers_exact"] >= 0.75 and scores["typed_answers_exact"] >= 0.9, scores


@pytest.mark.slow
def test_spoken_questions_in_held_out_voices_get_their_answers(tmp_path: Path) -> None:
    encoder, model = build_smoke_encoder(ENCODER_SEED), load_trained()
    rng = np.random.default_rng(7)
    voices = corpus.voices("heldout")
    picked = [QA[i] for i in (0, 1, 2, 5, 12, 32)]  # the demo's three questions and three others
    right = 0
    for i, (question, answer) in enumerate(picked):
        with torch.inference_mode():
            speech = encoder.encode(speak(question, voices[i % len(voices)].name, rng, tmp_path))
        segments = PROMPT.conversation([SpeechTurn("q")], system_prompt=DEFAULT_INSTRUCTIONS, open_assistant=True)
        ids = [s for s in segments if isinstance(s, list)]
        right += reply_to(model, [ids[0], speech, ids[1]]) == answer
    assert right >= 4, f"{right} of {len(picked)} answered exactly"  # ~80 % of held-out clips (metrics.json)


def test_a_typed_question_is_answered_after_an_earlier_spoken_turn() -> None:
    model = load_trained()
    earlier = PROMPT.conversation(
        [TextTurn("user", QA[3][0]), TextTurn("assistant", QA[3][1]), TextTurn("user", QA[0][0])],
        system_prompt=DEFAULT_INSTRUCTIONS,
        open_assistant=True,
    )
    assert reply_to(model, earlier) == QA[0][1]  # type: ignore[arg-type]


def test_training_conversations_are_laid_out_as_the_session_lays_them_out() -> None:
    tok = SmokeByteTokenizer()
    speech = torch.zeros(5, 256)
    sampler = ConversationSampler([[speech]] * len(QA), TrainSettings(typed_p=0.0))
    conv = sampler.sample(np.random.default_rng(3))
    n = sum(len(s) if isinstance(s, list) else s.shape[0] for s in conv.segments)
    assert len(conv.targets) == n
    learned = [t for t in conv.targets if t != IGNORE]
    # The last reply is learned whole, ending with <|im_end|>; nothing else but replies is learned.
    assert learned[-1] == tok.special_token_id(IM_END)
    replies = tok.decode(learned).split("\ufffd")
    assert replies[-1] in {answer for _, answer in QA}
    flat: list[int] = []
    for s in conv.segments:
        flat.extend(s if isinstance(s, list) else [-1] * s.shape[0])
    assert flat[-2:] == PROMPT.assistant_close(), "a reply ends as a session closes it"


def test_held_out_voices_are_never_trained_on() -> None:
    heldout = {v.name.partition("+")[2] for v in corpus.voices("heldout")}
    assert all(voice.partition("+")[2] not in heldout for voice in training_voices())


def test_a_conversation_targets_only_the_reply_segment() -> None:
    conv = Conversation()
    conv.add([1, 2, 3])
    conv.add([10, 11, 99], learn=[10, 11, 99])
    assert conv.targets == [IGNORE, IGNORE, 10, 11, 99, IGNORE]
