"""Fold weight-normalised convolutions (HiFT, CAM++-style checkpoints) into plain weights.

Checkpoints saved with ``torch.nn.utils.weight_norm`` hold ``X.weight_g`` / ``X.weight_v``; those
saved with ``torch.nn.utils.parametrizations.weight_norm`` hold ``X.parametrizations.weight.original0``
/ ``original1``. Serving never trains, so ``weight = g * v / ||v||`` is computed once at import.
"""

from __future__ import annotations

import torch

_PAIRS = ((".weight_g", ".weight_v"), (".parametrizations.weight.original0", ".parametrizations.weight.original1"))


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return ``state`` with every (g, v) pair replaced by ``X.weight``; other keys pass through."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for g_suffix, v_suffix in _PAIRS:
        for key in state:
            if not key.endswith(g_suffix):
                continue
            base = key[: -len(g_suffix)]
            v_key = base + v_suffix
            if v_key not in state:
                continue
            g, v = state[key].float(), state[v_key].float()
            # g keeps size 1 on the dimensions the norm runs over (all but torch's ``dim``).
            dims = [d for d in range(v.dim()) if g.shape[d] == 1 and v.shape[d] != 1] or list(range(1, v.dim()))
            norm = v.pow(2).sum(dim=dims, keepdim=True).sqrt()
            out[base + ".weight"] = (g * v / norm).to(state[v_key].dtype)
            used.update((key, v_key))
    for key, tensor in state.items():
        if key not in used:
            out[key] = tensor
    return out
