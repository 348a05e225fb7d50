"""Token2Wav: CosyVoice 2 speech tokens (6561 FSQ ids, 25 Hz) -> 24 kHz float32 PCM.

960 samples per token, always: ``synthesize`` renders a whole utterance in one pass and
``new_stream`` returns a :class:`~services.vocoder.stream.VocoderStream` for the speak path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .config import VocoderConfig
from .flow import Flow
from .hift import HiFTGenerator
from .inputs import TokenInput, as_token_ids
from .stream import VocoderStream


class Token2Wav(nn.Module):
    """Flow (tokens -> mel) and HiFT (mel -> PCM) with a default speaker for callers that have none."""

    default_speaker: Tensor
    # HiFT's phases, STFT and iSTFT stay float32 (as in CosyVoice 2's fp16 mode), and so does the stored
    # voice; the flow runs in the served dtype (services.common.precision).
    FLOAT32_PARTS = ("hift", "default_speaker")

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        self.config = config
        self.flow = Flow(config.flow)
        self.hift = HiFTGenerator(config.hift)
        self.register_buffer("default_speaker", torch.randn(config.flow.spk_embed_dim))

    def speaker_condition(self, speaker: Tensor | None) -> Tensor:
        """A CAM++ embedding ``[192]`` or ``[1, 192]`` (or None: the default speaker) -> ``[1, 80]``."""
        dim = self.config.flow.spk_embed_dim
        if speaker is None:
            speaker = self.default_speaker
        if not isinstance(speaker, Tensor) or not speaker.is_floating_point():
            raise ValueError(f"speaker must be a float tensor of shape ({dim},) or (1, {dim}), got {type(speaker)}")
        if tuple(speaker.shape) not in ((dim,), (1, dim)):
            raise ValueError(
                f"speaker must be a CAM++ embedding of shape ({dim},) or (1, {dim}), got {tuple(speaker.shape)}"
            )
        speaker = speaker.detach().to(self.default_speaker.device, torch.float32).reshape(1, dim)
        if not bool(torch.isfinite(speaker).all()) or float(speaker.norm()) == 0.0:
            raise ValueError("speaker embedding must be finite and non-zero")
        with torch.inference_mode():
            return self.flow.project_speaker(speaker)

    def mel(self, tokens: TokenInput, speaker: Tensor | None = None) -> Tensor:
        """Whole-utterance mel ``[80, 2N]`` (what the HiFT vocoder renders)."""
        ids = as_token_ids(tokens, self.config.flow.vocab_size)
        spks = self.speaker_condition(speaker)
        with torch.inference_mode():
            return self.flow(ids, spks)

    def synthesize(self, tokens: TokenInput, speaker: Tensor | None = None) -> np.ndarray:
        """Whole utterance in one pass: float32 PCM of exactly ``960 * len(tokens)`` samples."""
        mel = self.mel(tokens, speaker)
        if mel.shape[1] == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            audio, _ = self.hift.render(mel, 0, self.hift.initial_phase())
        return audio.cpu().numpy().astype(np.float32, copy=False)

    def new_stream(self, speaker: Tensor | None = None) -> VocoderStream:
        return VocoderStream(self, self.speaker_condition(speaker))
