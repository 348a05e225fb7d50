"""Streaming session of the encoder: PCM chunks of any size in, embeddings out per completed chunk.

A session emits ``chunk_frames / projector_stride`` embeddings each time a chunk of LFR frames is
complete (once per ``chunk_ms`` of audio: the fbank windows of a chunk's last LFR frame end inside
the chunk, so there is no look-ahead), and at ``final=True``
flushes the LFR tail and the partial last chunk. Concatenating everything it returns equals
:meth:`SpeechEncoder.encode` on the concatenated PCM, up to float rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from services.encoder.frontend import FbankExtractor, LfrStacker, validate_pcm

if TYPE_CHECKING:
    from services.encoder.model import SpeechEncoder


class EncoderStream:
    """One session's frontend buffers and per-layer caches; not thread-safe, one caller at a time."""

    def __init__(self, model: SpeechEncoder) -> None:
        config = model.config
        if config.fsmn_right_context != 0:
            raise ValueError(
                f"streaming needs fsmn_right_context=0 (got {config.fsmn_right_context}): "
                "a look-ahead FSMN would read frames of chunks not yet received"
            )
        self._model = model
        self._config = config
        self._fbank = FbankExtractor(config)
        self._lfr = LfrStacker(config)
        self._caches = model.new_caches()
        self._pending = torch.zeros(0, config.lfr_dim, device=model.device)
        self._emitted = 0
        self._finished = False

    @property
    def frames_emitted(self) -> int:
        """Embeddings returned so far (each covers ``frame_ms`` of audio)."""
        return self._emitted

    @property
    def finished(self) -> bool:
        return self._finished

    @torch.inference_mode()
    def push(self, pcm: np.ndarray, final: bool = False, *, sample_rate: int | None = None) -> torch.Tensor:
        """Feed float32 PCM ``[S]`` (may be empty, e.g. to flush); return new embeddings ``[n, llm_dim]``."""
        if self._finished:
            raise RuntimeError("encoder stream already finished with final=True; start a new stream")
        pcm = validate_pcm(pcm, self._config, sample_rate, allow_empty=True)
        lfr = self._lfr.push(self._fbank.accept(pcm), final=final)
        if lfr.shape[0]:
            self._pending = torch.cat([self._pending, torch.from_numpy(lfr).to(self._pending.device)], dim=0)
        chunk = self._config.chunk_frames
        take = self._pending.shape[0] if final else self._pending.shape[0] // chunk * chunk
        self._finished = final
        if take == 0:
            return torch.zeros(0, self._config.llm_dim, device=self._pending.device)
        frames, self._pending = self._pending[:take], self._pending[take:]
        out = self._model.forward_frames(frames, self._caches)
        self._emitted += out.shape[0]
        return out
