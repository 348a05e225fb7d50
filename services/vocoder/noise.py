"""Gaussian noise that is a pure function of (seed, absolute position).

Flow matching starts from noise and the NSF source adds noise; for synthesis to be deterministic
and for a stream to agree with whole-utterance synthesis, the noise at frame (or sample) ``i`` must
not depend on how the utterance was cut into pushes. CosyVoice 2 uses a fixed 300 s noise buffer
for the same reason; generating fixed-size blocks from a per-block seed has no length limit and
needs no memory.
"""

from __future__ import annotations

import torch
from torch import Tensor


class PositionalNoise:
    def __init__(self, seed: int, channels: int, block: int) -> None:
        if not 0 <= seed < 2**31:
            raise ValueError(f"noise seed must be in [0, 2**31), got {seed}")
        self.seed, self.channels, self.block = seed, channels, block

    def _block(self, index: int) -> Tensor:
        # Drawn on the CPU whatever the model's device: a seed gives the same noise on every device.
        generator = torch.Generator().manual_seed((self.seed << 32) + index)
        return torch.randn(self.channels, self.block, generator=generator, device="cpu")

    def take(self, start: int, length: int) -> Tensor:
        """Noise for positions ``[start, start + length)``: ``[channels, length]`` float32."""
        if length <= 0:
            return torch.zeros(self.channels, 0, device="cpu")
        first, last = start // self.block, (start + length - 1) // self.block
        blocks = torch.cat([self._block(i) for i in range(first, last + 1)], dim=1)
        begin = start - first * self.block
        return blocks[:, begin : begin + length]
