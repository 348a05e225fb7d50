"""Streaming session of the encoder: PCM chunks of any size in, embeddings out per completed chunk.

A session emits ``chunk_frames / projector_stride`` embeddings each time a chunk of LFR frames is
complete (once per ``chunk_ms`` of audio: the fbank windows of a chunk's last LFR frame end inside
the chunk, so there is no look-ahead), and at ``final=True``
flushes the LFR tail and the partial last chunk. Concatenating everything it returns equals
:meth:`SpeechEncoder.encode` on the concatenated PCM, up to float rounding, when the FSMN does not
look ahead (``fsmn_right_context`` 0, the smoke and minmo presets); imported SenseVoice weights look
ahead, and their stream is a measured approximation (docs/real-model.md).

A push has two halves so that one network pass serves many sessions (Triton's batch): :meth:`EncoderStream.prepare`
(validation and frontend, per stream) and :func:`~services.encoder.batch.encode_batch` (one network
pass for all prepared streams). :meth:`EncoderStream.push` is the two for one stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from services.encoder.batch import EncoderWork, encode_batch
from services.encoder.frontend import FbankExtractor, LfrStacker, validate_pcm

if TYPE_CHECKING:
    from services.encoder.model import EncoderState, SpeechEncoder


class EncoderStream:
    """One session's frontend buffers and network state; not thread-safe, one caller at a time."""

    def __init__(self, model: SpeechEncoder) -> None:
        config = model.config
        # With fsmn_right_context > 0 (imported SenseVoice weights) the stream is an approximation of the
        # whole-utterance function: a chunk's last frames read zeros for frames not yet received.
        self._model = model
        self._config = config
        self._fbank = FbankExtractor(config)
        self._lfr = LfrStacker(config)
        self._state = model.new_state()
        # LFR frames from state.start on that the network has not encoded: a prepared work stays here
        # until encode_batch commits it, so a failed pass loses nothing and can simply be rerun.
        self._pending = torch.zeros(0, config.lfr_dim, device=model.device)
        self._samples = 0
        self._emitted = 0
        self._finished = False

    @property
    def model(self) -> SpeechEncoder:
        return self._model

    @property
    def state(self) -> EncoderState:
        """The network's position and caches; replaced (never mutated) by each encoded work."""
        return self._state

    @property
    def frames_emitted(self) -> int:
        """Embeddings returned so far (each covers ``frame_ms`` of audio)."""
        return self._emitted

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def samples_needed(self) -> int:
        """PCM samples still to receive before a non-final push emits the next chunk (0 once finished).

        Exact: ``samples_needed - 1`` more samples emit nothing, ``samples_needed`` emit a chunk. The
        chunk's last LFR frame ``i`` reads fbank frames up to ``lfr_n*i + lfr_m-1 - pad``, and fbank
        frame ``f`` needs samples up to ``window + f*shift`` (``snip_edges``).
        """
        if self._finished:
            return 0
        c = self._config
        last_lfr = self._state.start + c.chunk_frames - 1
        fbank_frames = c.lfr_n * last_lfr + c.lfr_m - (c.lfr_m - 1) // 2
        window = c.sample_rate * c.frame_length_ms // 1000
        shift = c.sample_rate * c.frame_shift_ms // 1000
        return max(0, window + (fbank_frames - 1) * shift - self._samples)

    @torch.inference_mode()
    def prepare(self, pcm: np.ndarray, final: bool = False, *, sample_rate: int | None = None) -> EncoderWork:
        """Validate the PCM and run the frontend; return the LFR frames the network must encode now.

        Those are the whole chunks pending (all pending frames at ``final``), possibly none. Raises
        ValueError (stream unchanged) on bad PCM, RuntimeError after a final push.
        """
        if self._finished:
            raise RuntimeError("encoder stream already finished with final=True; start a new stream")
        pcm = validate_pcm(pcm, self._config, sample_rate, allow_empty=True)
        lfr = self._lfr.push(self._fbank.accept(pcm), final=final)
        self._samples += pcm.size
        if lfr.shape[0]:
            self._pending = torch.cat([self._pending, torch.from_numpy(lfr).to(self._pending.device)], dim=0)
        chunk = self._config.chunk_frames
        take = self._pending.shape[0] if final else self._pending.shape[0] // chunk * chunk
        self._finished = final
        return EncoderWork(self, self._pending[:take], final, self._state.start)

    def push(self, pcm: np.ndarray, final: bool = False, *, sample_rate: int | None = None) -> torch.Tensor:
        """Feed float32 PCM ``[S]`` (may be empty, e.g. to flush); return new embeddings ``[n, llm_dim]``."""
        return encode_batch(self._model, [self.prepare(pcm, final, sample_rate=sample_rate)])[0]

    def _advance(self, work: EncoderWork, state: EncoderState, emitted: int) -> None:
        """Commit an encoded ``work`` (called by :func:`~services.encoder.batch.encode_batch` only)."""
        self._pending = self._pending[work.size :]
        self._state = state
        self._emitted += emitted
