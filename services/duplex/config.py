"""Configuration of the full-duplex predictor stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from services.common.config import FlatConfig


@dataclass(frozen=True)
class DuplexConfig(FlatConfig):
    """Sizes of :class:`~services.duplex.model.DuplexPredictor`.

    ``window`` frames of 120 ms is all the context the predictor has (16 = 1.92 s): attention of
    frame ``i`` covers frames ``i-window+1 .. i``, which is what lets a stream keep only
    ``window - 1`` frames and still compute exactly what :meth:`forward` computes.
    ``feature_fingerprint`` is the sha256 of the encoder and backbone weights whose hidden states the
    checkpoint was trained on ("" when untrained); a stale checkpoint is refused against it.
    """

    llm_dim: int = 256
    d_model: int = 64
    num_heads: int = 4
    ffn_dim: int = 128
    window: int = 16
    dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    frame_ms: int = 120
    feature_fingerprint: str = ""

    def __post_init__(self) -> None:
        checks = [
            (self.llm_dim > 0 and self.d_model > 0 and self.ffn_dim > 0, "llm_dim, d_model and ffn_dim must be > 0"),
            (self.num_heads > 0 and self.d_model % self.num_heads == 0, "d_model must be divisible by num_heads"),
            (self.window >= 1, "window must be at least 1 frame"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"DuplexConfig: {message}")

    @classmethod
    def preset(cls, name: str) -> Self:
        """``smoke``: tiny, over the 256-wide smoke backbone. ``minmo``: ~18M parameters over Qwen2.5-7B.

        ``minmo`` assumptions (MinMo publishes only "one Transformer layer plus a linear softmax layer,
        ~18M"): a 3584 -> 1024 input projection, one 16-head layer of width 1024 with a 5120-wide
        feed-forward; that gives ~18.4M parameters.
        """
        if name == "smoke":
            return cls()
        if name == "minmo":
            return cls(llm_dim=3584, d_model=1024, num_heads=16, ffn_dim=5120, window=16, dropout=0.1)
        raise ValueError(f"unknown duplex preset {name!r}; expected 'smoke' or 'minmo'")
