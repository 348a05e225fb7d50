"""Configuration of the token2wav stage: flow (tokens -> mel), HiFT (mel -> PCM) and streaming.

The field names follow CosyVoice 2's ``cosyvoice2.yaml`` where one exists, so a real checkpoint's
hyper-parameters can be read across one to one by the importer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Self

from services.common.config import check_fields

SAMPLE_RATE = 24000
MEL_FRAME_SAMPLES = 480  # 50 Hz mel at 24 kHz
TOKEN_MEL_RATIO = 2  # 25 Hz tokens -> 50 Hz mel
SAMPLES_PER_TOKEN = MEL_FRAME_SAMPLES * TOKEN_MEL_RATIO


def _tuplify(value: Any) -> Any:
    """JSON gives lists; the frozen configs hold (nested) tuples so they stay hashable and equal."""
    if isinstance(value, list | tuple):
        return tuple(_tuplify(v) for v in value)
    return value


@dataclass(frozen=True)
class FlowConfig:
    """Token embedding, chunk-aware upsampling Conformer encoder and the flow-matching estimator."""

    vocab_size: int = 6561
    input_size: int = 512  # token embedding width
    output_size: int = 80  # mel bins
    spk_embed_dim: int = 192  # CAM++ x-vector
    token_mel_ratio: int = TOKEN_MEL_RATIO
    pre_lookahead_len: int = 3  # tokens of right context the encoder reads before its causal part
    chunk_size: int = 25  # tokens per attention chunk (the estimator uses chunk_size * token_mel_ratio frames)
    left_chunks: int = -1  # chunks each chunk may attend to on its left; -1: all of them
    encoder_size: int = 512
    encoder_heads: int = 8
    encoder_linear_units: int = 2048
    encoder_blocks: int = 6
    encoder_up_blocks: int = 4
    estimator_channels: int = 256
    estimator_heads: int = 8
    estimator_head_dim: int = 64
    estimator_blocks: int = 4  # transformer blocks per U-Net block ("n_blocks")
    estimator_mid_blocks: int = 12
    n_timesteps: int = 10
    cfg_rate: float = 0.7
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if self.token_mel_ratio != TOKEN_MEL_RATIO:
            raise ValueError(f"token_mel_ratio must be {TOKEN_MEL_RATIO} (25 Hz tokens, 50 Hz mel)")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 token, got {self.chunk_size}")
        if self.left_chunks < -1:
            raise ValueError(f"left_chunks must be -1 (unbounded) or >= 0, got {self.left_chunks}")
        if self.encoder_size % self.encoder_heads:
            raise ValueError("encoder_size must be divisible by encoder_heads")
        if self.n_timesteps < 1:
            raise ValueError(f"n_timesteps must be >= 1, got {self.n_timesteps}")


@dataclass(frozen=True)
class HiftConfig:
    """HiFT vocoder: NSF source from predicted F0, ConvTranspose upsampling and an iSTFT head."""

    in_channels: int = 80
    base_channels: int = 512
    nb_harmonics: int = 8
    sampling_rate: int = SAMPLE_RATE
    nsf_alpha: float = 0.1
    nsf_sigma: float = 0.003
    nsf_voiced_threshold: float = 10.0
    upsample_rates: tuple[int, ...] = (8, 5, 3)
    upsample_kernel_sizes: tuple[int, ...] = (16, 11, 7)
    n_fft: int = 16
    hop_len: int = 4
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    source_resblock_kernel_sizes: tuple[int, ...] = (7, 7, 11)
    source_resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    f0_cond_channels: int = 512
    noise_seed: int = 1

    def __post_init__(self) -> None:
        if self.sampling_rate != SAMPLE_RATE:
            raise ValueError(f"sampling_rate must be {SAMPLE_RATE}")
        if math.prod(self.upsample_rates) * self.hop_len != MEL_FRAME_SAMPLES:
            raise ValueError(
                f"prod(upsample_rates) * hop_len must be {MEL_FRAME_SAMPLES} samples per mel frame, got "
                f"{math.prod(self.upsample_rates)} * {self.hop_len}"
            )
        if len(self.upsample_kernel_sizes) != len(self.upsample_rates):
            raise ValueError("upsample_kernel_sizes needs one entry per upsample rate")
        if len(self.source_resblock_kernel_sizes) != len(self.upsample_rates):
            raise ValueError("source_resblock_kernel_sizes needs one entry per upsample rate")
        if len(self.resblock_dilation_sizes) != len(self.resblock_kernel_sizes):
            raise ValueError("resblock_dilation_sizes needs one entry per resblock kernel size")
        if self.base_channels % (2 ** len(self.upsample_rates)):
            raise ValueError("base_channels must halve cleanly at every upsampling stage")


@dataclass(frozen=True)
class StreamConfig:
    """How a stream trades latency for agreement with whole-utterance synthesis.

    After a non-final push the stream holds back the mel frames of the last ``pre_lookahead_len``
    tokens (their encoder input is still missing its right context) plus ``hift_right_frames``
    frames, so that the audio it returns was vocoded with some right context. The next push renders
    again from ``hift_left_frames`` frames before the join and cross-fades the first
    ``crossfade_samples`` samples with the audio it held back.
    """

    hift_left_frames: int = 16
    hift_right_frames: int = 0
    crossfade_samples: int = 480


@dataclass(frozen=True)
class VocoderConfig:
    """Everything needed to rebuild a :class:`~services.vocoder.model.Token2Wav` exactly."""

    flow: FlowConfig = field(default_factory=FlowConfig)
    hift: HiftConfig = field(default_factory=HiftConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    speaker_seed: int = 2

    def __post_init__(self) -> None:
        held = (self.flow.pre_lookahead_len * self.flow.token_mel_ratio + self.stream.hift_right_frames) * (
            MEL_FRAME_SAMPLES
        )
        if not 0 < self.stream.crossfade_samples <= held:
            raise ValueError(
                f"crossfade_samples must be in (0, {held}]: a stream can only cross-fade audio it held back"
            )
        if self.stream.hift_left_frames < 1 or self.stream.hift_right_frames < 0:
            raise ValueError("hift_left_frames must be >= 1 and hift_right_frames >= 0")

    @property
    def speech_token_size(self) -> int:
        """Valid speech token ids are ``[0, speech_token_size)``."""
        return self.flow.vocab_size

    @property
    def speaker_dim(self) -> int:
        """Width of the CAM++ speaker embedding a stream accepts."""
        return self.flow.spk_embed_dim

    @property
    def hold_back_samples(self) -> int:
        """Samples a non-final push keeps back at most (besides tokens not yet pushed)."""
        frames = self.flow.pre_lookahead_len * self.flow.token_mel_ratio + self.stream.hift_right_frames
        return frames * MEL_FRAME_SAMPLES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        parts: dict[str, Any] = {}
        for f, sub in (("flow", FlowConfig), ("hift", HiftConfig), ("stream", StreamConfig)):
            if f in d:
                check_fields(sub, d[f])
                parts[f] = sub(**{k: _tuplify(v) for k, v in d[f].items()})
        if "speaker_seed" in d:
            parts["speaker_seed"] = int(d["speaker_seed"])
        return cls(**parts)

    @classmethod
    def preset(cls, name: str) -> Self:
        """``"smoke"``: tiny and CPU-fast; ``"minmo"``: CosyVoice 2's token2wav sizes.

        minmo follows ``examples/libritts/cosyvoice2/conf/cosyvoice2.yaml`` of FunAudioLLM/CosyVoice:
        flow = ``CausalMaskedDiffWithXvec`` (input_size 512, vocab 6561, pre_lookahead_len 3,
        ``UpsampleConformerEncoder`` 512 wide, 8 heads, 2048 linear units, 6 blocks + 4 blocks after
        the 2x upsampling, static_chunk_size 25 tokens) and ``CausalConditionalCFM`` (cosine t
        schedule, inference_cfg_rate 0.7, 10 Euler steps) whose estimator is a
        ``CausalConditionalDecoder`` (channels [256], 4 transformer blocks per block, 12 mid blocks,
        8 heads of 64); hift = ``HiFTGenerator`` (base 512, 8 harmonics, rates 8/5/3, kernels
        16/11/7, n_fft 16, hop 4, ConvRNNF0Predictor with 512 channels). That gives about 112M flow
        and 20.8M HiFT parameters (see tests). Assumptions of ours: rel-pos attention without
        dropout, no Conformer conv module (``use_cnn_module: False`` in the yaml), weight norm folded
        into plain weights (the importer folds ``weight_g``/``weight_v``), no zero-shot prompt
        (``cond`` is zero, as CosyVoice 2 does without a prompt), and ``left_chunks`` 2 (CosyVoice
        attends to all left chunks; bounding it caps a stream's estimator keys/values at 100 frames,
        about 0.46 GB in float32: 56 blocks x 10 steps x 2 CFG branches x 2 x 512 values per frame).
        With 25-token chunks, a push that ends inside a chunk emits mel computed from the partial
        chunk (the exact values follow once the chunk completes), so streaming is close to, not
        equal to, whole synthesis; ``chunk_size`` 1 makes it exact (the CosyVoice 2 paper trains a
        full-causal mask among its chunk masks; the released recipe uses static 25-token chunks).
        The streaming overlap mirrors CosyVoice 2's 8-frame HiFT cache: 6 lookahead + 2 frames.

        smoke uses ``chunk_size`` 1, so its streaming mel equals whole synthesis and every test bound
        comes from the HiFT overlap alone, and 4 Euler steps instead of 10.
        """
        if name == "minmo":
            return cls(
                flow=FlowConfig(left_chunks=2),
                hift=HiftConfig(),
                stream=StreamConfig(hift_left_frames=16, hift_right_frames=2, crossfade_samples=960),
            )
        if name == "smoke":
            return cls(
                flow=FlowConfig(
                    input_size=64,
                    chunk_size=1,
                    left_chunks=24,
                    encoder_size=64,
                    encoder_heads=2,
                    encoder_linear_units=128,
                    encoder_blocks=2,
                    encoder_up_blocks=1,
                    estimator_channels=32,
                    estimator_heads=2,
                    estimator_head_dim=16,
                    estimator_blocks=1,
                    estimator_mid_blocks=1,
                    n_timesteps=4,
                ),
                hift=HiftConfig(
                    base_channels=32,
                    resblock_kernel_sizes=(3,),
                    resblock_dilation_sizes=((1, 3),),
                    source_resblock_kernel_sizes=(3, 3, 3),
                    source_resblock_dilation_sizes=((1,), (1,), (1,)),
                    f0_cond_channels=16,
                ),
                stream=StreamConfig(hift_left_frames=10, hift_right_frames=2, crossfade_samples=480),
            )
        raise ValueError(f"unknown vocoder preset {name!r}: use 'smoke' or 'minmo'")
