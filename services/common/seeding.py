"""Deterministic initialisation: the smoke weights must be identical on every machine.

The trained smoke duplex predictor reads hidden states of the seeded smoke encoder and backbone,
so their weights have to be reproducible bit for bit for a pinned torch version.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
