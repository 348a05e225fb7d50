"""Training features equal what the runtime listen path computes, chunk by chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from services.duplex.dialogues import FRAME_SAMPLES, make_dialogues
from services.duplex.features import smoke_extractor
from services.smoke_seeds import BACKBONE_SEED, DUPLEX_SEED, ENCODER_SEED, SPEECH_LM_SEED, VOCODER_SEED

# Whole-utterance vs 240 ms chunks through encoder stream and backbone session: float rounding only.
RUNTIME_ATOL = 1e-3


def test_smoke_seeds_are_distinct_and_as_documented() -> None:
    assert (ENCODER_SEED, BACKBONE_SEED, DUPLEX_SEED, SPEECH_LM_SEED, VOCODER_SEED) == (1001, 1002, 1003, 1004, 1005)


def test_features_match_the_streaming_listen_path(tmp_path: Path) -> None:
    extractor = smoke_extractor()
    dialogue = make_dialogues(1, "heldout", seed=11, cache_dir=tmp_path)[0]
    history = (("user", "hello"), ("assistant", "hi, how can I help"))
    whole = extractor(dialogue.audio, history)
    assert whole.shape == (dialogue.n_frames, 256)

    encoder_stream = extractor.encoder.new_stream()
    session = extractor.backbone.new_session()
    session.append(ids=extractor.prefix(history))
    rows = []
    chunk = 2 * FRAME_SAMPLES
    for start in range(0, len(dialogue.audio), chunk):
        final = start + chunk >= len(dialogue.audio)
        embeds = encoder_stream.push(dialogue.audio[start : start + chunk], final=final)
        if embeds.shape[0]:
            rows.append(session.append(embeds=embeds))
    streamed = torch.cat(rows)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=RUNTIME_ATOL, rtol=0)


def test_history_changes_the_features_and_prefix_layout() -> None:
    extractor = smoke_extractor()
    pcm = (0.05 * np.sin(np.arange(16 * FRAME_SAMPLES) * 0.05)).astype(np.float32)
    plain, with_history = extractor(pcm), extractor(pcm, (("user", "hi"), ("assistant", "hello")))
    assert plain.shape == with_history.shape == (16, 256)
    assert not torch.allclose(plain, with_history)
    prefix = extractor.prefix()
    assert prefix == extractor.prompt.user_speech_open() and len(extractor.prefix((("user", "hi"),))) > len(prefix)
