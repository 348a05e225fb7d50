"""Reading torch ``.pt`` checkpoints safely (``weights_only``: no code from the file runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from services.importers.errors import CheckpointError


def load_pt(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises several types for a corrupt or code-carrying file
        raise CheckpointError(f"{path} is not a loadable torch checkpoint of tensors: {exc}") from None


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict, also when nested under ``state_dict`` / ``model`` (FunASR and trainer checkpoints)."""
    obj = load_pt(path)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict (name -> tensor)")
    return {str(k): v for k, v in obj.items()}


def shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}
