"""Validation of what callers pass in: every bad input is a ValueError that says what to fix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

TokenInput = Sequence[int] | Tensor | np.ndarray


def as_token_ids(tokens: TokenInput, vocab_size: int) -> Tensor:
    """Validate speech token ids (1-D, or ``[1, N]``) and return them as a 1-D int64 tensor."""
    if isinstance(tokens, Tensor):
        if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
            raise ValueError(f"speech tokens must be integer ids, got a {tokens.dtype} tensor: pass a long tensor")
        ids = tokens.detach().to("cpu", torch.long)
    else:
        array = np.asarray(tokens)
        if array.size == 0:
            array = array.astype(np.int64)
        if array.dtype.kind not in "iu":
            raise ValueError(f"speech tokens must be integer ids, got dtype {array.dtype}: pass a list of ints")
        ids = torch.from_numpy(array.astype(np.int64))
    if ids.dim() == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if ids.dim() != 1:
        raise ValueError(f"speech tokens must be a 1-D sequence of ids, got shape {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        bad = ids[(ids < 0) | (ids >= vocab_size)][0]
        raise ValueError(f"speech token id {int(bad)} is outside [0, {vocab_size}): only FSQ speech tokens are valid")
    return ids
