"""The smoke tokenizer and the ChatML prompt layout, live feeding == rebuilt from history."""

from __future__ import annotations

import re

import pytest
import torch

from services.backbone import (
    ChatPrompt,
    SmokeByteTokenizer,
    SpeechSlot,
    SpeechTurn,
    TextTurn,
    Tokenizer,
    build_smoke,
    feed,
)
from services.backbone.prompt import Turn, merge_segments

TOK = SmokeByteTokenizer()
IM_START, IM_END, AUDIO_BOS, AUDIO_EOS = 257, 258, 259, 260


def test_tokenizer_round_trips_utf8_including_non_ascii() -> None:
    text = "Grüße, 你好 👋 — ok"
    ids = TOK.encode(text)
    assert len(ids) == len(text.encode("utf-8")) and all(0 <= i < 256 for i in ids)
    assert TOK.decode(ids) == text
    assert isinstance(TOK, Tokenizer)


def test_tokenizer_specials_are_named_skipped_and_not_injectable() -> None:
    assert TOK.vocab_size == 261
    assert dict(TOK.special_tokens) == {
        "<|endoftext|>": 256,
        "<|im_start|>": IM_START,
        "<|im_end|>": IM_END,
        "<|audio_bos|>": AUDIO_BOS,
        "<|audio_eos|>": AUDIO_EOS,
    }
    assert TOK.eos_id == IM_END
    assert TOK.decode([IM_START, *TOK.encode("hi"), IM_END]) == "hi"
    assert IM_START not in TOK.encode("<|im_start|>")
    with pytest.raises(KeyError, match=re.escape("no special token '<|vision_start|>'")):
        TOK.special_token_id("<|vision_start|>")


def test_decode_replaces_invalid_utf8_and_rejects_foreign_ids() -> None:
    cut = TOK.encode("é")[:1] + TOK.encode("a")
    assert TOK.decode(cut) == "\ufffda"
    with pytest.raises(ValueError, match=r"token id 261 is outside the vocabulary \[0, 261\)"):
        TOK.decode([261])


def test_spoken_turn_layout() -> None:
    prompt = ChatPrompt(TOK)
    nl = TOK.encode("\n")
    segments = prompt.conversation([SpeechTurn("turn-1")], system_prompt="Be brief.", open_assistant=True)
    assert segments == [
        [IM_START, *TOK.encode("system\nBe brief."), IM_END, *nl, IM_START, *TOK.encode("user\n"), AUDIO_BOS],
        SpeechSlot("turn-1"),
        [AUDIO_EOS, IM_END, *nl, IM_START, *TOK.encode("assistant\n")],
    ]
    assert prompt.assistant_close() == [IM_END, *nl]
    with_instruction = prompt.user_speech("k", "Transcribe the audio.")
    assert with_instruction[0] == [IM_START, *TOK.encode("user\nTranscribe the audio."), AUDIO_BOS]


def test_history_layout_prefers_stored_token_ids() -> None:
    prompt = ChatPrompt(TOK)
    turns: list[Turn] = [
        TextTurn("user", "hi"),
        TextTurn("assistant", "ignored text", token_ids=(104, 111)),
        SpeechTurn("a"),
        TextTurn("assistant", "ok"),
    ]
    segments = prompt.conversation(turns)
    assert [type(s) for s in segments] == [list, SpeechSlot, list]
    decoded = TOK.decode([i for s in segments if isinstance(s, list) for i in s])
    assert decoded == "user\nhi\nassistant\nho\nuser\n\nassistant\nok\n"
    assert merge_segments([[1], [], [2, 3], SpeechSlot("x"), [], [4]]) == [[1, 2, 3], SpeechSlot("x"), [4]]


def test_rebuilt_context_equals_the_live_one() -> None:
    backbone = build_smoke(0)
    prompt = ChatPrompt(TOK)
    speech = torch.randn(6, 256, generator=torch.Generator().manual_seed(0))
    live = backbone.new_session()
    live.append(ids=prompt.user_speech_open())
    live.append(embeds=speech[:4])  # speech arrives in chunks
    live.append(embeds=speech[4:])
    live.append(ids=prompt.user_speech_close() + prompt.assistant_open())
    reply = [t.token_id for t in live.generate(4, temperature=1.0, seed=0)]
    live_close = live.append(ids=prompt.assistant_close())

    rebuilt = backbone.new_session()
    segments = prompt.conversation([SpeechTurn("s"), TextTurn("assistant", token_ids=tuple(reply))])
    rebuilt_close = feed(rebuilt, segments, {"s": speech})
    assert rebuilt.length == live.length
    torch.testing.assert_close(rebuilt_close[-2:], live_close, atol=1e-5, rtol=0)
    with pytest.raises(KeyError, match="no speech embeddings for slot 's'"):
        feed(backbone.new_session(), segments, {})
