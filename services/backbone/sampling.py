"""Next-token choice shared by the backbone and the speech-token LM.

Temperature 0 is greedy (argmax). Otherwise logits are scaled, cut to the ``top_k`` best and then to
the smallest set whose probability reaches ``top_p``, and one id is drawn with an explicit
``torch.Generator``: a seed then reproduces a stream without touching the process-wide RNG.
"""

from __future__ import annotations

import torch


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = no limit), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def sample_token(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator,
) -> int:
    """Pick one id from 1-D ``logits``."""
    if temperature == 0.0:
        return int(torch.argmax(logits))
    scaled = logits.float() / temperature
    if 0 < top_k < scaled.shape[0]:
        values, ids = torch.topk(scaled, top_k)
    else:
        values, ids = torch.sort(scaled, descending=True)
    probs = torch.softmax(values, dim=-1)
    if top_p < 1.0:
        # Keep every candidate whose preceding mass is still below top_p (the best one always).
        before = torch.cumsum(probs, dim=-1) - probs
        keep = int((before < top_p).sum())
        probs = probs[:keep]
        ids = ids[:keep]
    choice = torch.multinomial(probs.cpu(), 1, generator=generator)
    return int(ids[int(choice)])
