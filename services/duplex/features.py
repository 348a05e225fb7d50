"""The predictor's input features, computed exactly as the runtime listen path computes them.

The listen path opens a spoken user turn in a backbone session (ChatML ``<|im_start|>user\\n
<|audio_bos|>``) and appends the encoder's embeddings as they arrive; the backbone's last-layer
states at those speech positions are what the predictor reads. Training on anything else (e.g. the
encoder's output directly) would teach it features it never sees in service. A whole dialogue is
heard in the succession of contexts a session builds (:mod:`services.duplex.session_layout`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from services.backbone import Backbone, ChatPrompt, SmokeByteTokenizer, TextTurn, Tokenizer
from services.backbone.smoke import load_trained
from services.backbone.smoke.qa import answers
from services.duplex.dialogues import Dialogue
from services.duplex.fingerprint import weights_fingerprint
from services.duplex.session_layout import layout
from services.encoder import SpeechEncoder
from services.encoder import build_smoke as build_smoke_encoder
from services.smoke_seeds import ENCODER_SEED


class FeatureExtractor:
    """PCM of one listen session -> backbone hidden states of its speech frames ``[T, llm_dim]``."""

    def __init__(self, encoder: SpeechEncoder, backbone: Backbone, tokenizer: Tokenizer) -> None:
        self.encoder = encoder
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.prompt = ChatPrompt(tokenizer)

    @property
    def fingerprint(self) -> str:
        return weights_fingerprint(self.encoder, self.backbone)

    def prefix(self, history: Sequence[tuple[str, str]] = ()) -> list[int]:
        """Token ids before the speech: the system prompt (a leading ``("system", text)``), earlier text
        turns, then the opening of a spoken user turn, as the orchestrator lays them out."""
        system = history[0][1] if history and history[0][0] == "system" else None
        turns = [
            TextTurn("user" if role == "user" else "assistant", text) for role, text in history[system is not None :]
        ]
        ids: list[int] = []
        for segment in self.prompt.conversation(turns, system_prompt=system):
            assert isinstance(segment, list), "text turns have no speech slots"
            ids.extend(segment)
        return [*ids, *self.prompt.user_speech_open()]

    def __call__(self, pcm: np.ndarray, history: Sequence[tuple[str, str]] = ()) -> torch.Tensor:
        # Whole-utterance encoding equals the chunked encoder stream, and one backbone append equals
        # many (causal attention), up to float rounding: tests/unit/test_duplex_features.py checks it.
        embeds = self.encoder.encode(pcm.astype(np.float32, copy=False))
        session = self.backbone.new_session()
        session.append(ids=self.prefix(history))
        return session.append(embeds=embeds).float()

    def dialogue(self, dialogue: Dialogue, replies: Sequence[str] = answers()) -> torch.Tensor:
        """Features of every frame of ``dialogue`` ``[n_frames, llm_dim]``, each heard in the context a
        session would hear it in (``replies``: what the assistant's turns may say)."""
        embeds = self.encoder.encode(dialogue.audio.astype(np.float32, copy=False))
        if embeds.shape[0] != dialogue.n_frames:
            raise RuntimeError(f"encoder gave {embeds.shape[0]} frames for a dialogue of {dialogue.n_frames} frames")
        out = embeds.new_empty(dialogue.n_frames, self.backbone.config.hidden_size)
        for piece in layout(dialogue, self.prompt, self.tokenizer, tuple(replies)):
            session = self.backbone.new_session()
            ids: list[int] = []
            for segment in piece.prefix:
                if isinstance(segment, list):
                    ids.extend(segment)
                    continue
                if ids:
                    session.append(ids=ids)
                    ids = []
                session.append(embeds=embeds[segment[1] : segment[2]])
            if ids:
                session.append(ids=ids)
            hidden = session.append(embeds=embeds[piece.rows_from : piece.record_to])
            out[piece.record_from : piece.record_to] = hidden[piece.record_from - piece.rows_from :]
        return out.float()


def smoke_extractor() -> FeatureExtractor:
    """The extractor over the seeded smoke encoder and the trained smoke backbone the weights build ships."""
    return FeatureExtractor(build_smoke_encoder(ENCODER_SEED), load_trained(), SmokeByteTokenizer())
