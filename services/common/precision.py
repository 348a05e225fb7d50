"""The dtype a stage is served in, and the parts of a stage that stay float32 whatever it is.

A stage module is built and loaded in float32 (its weights file may hold any float dtype) and then
cast once for serving with :func:`cast_for_serving`. Each stage names, in ``FLOAT32_PARTS``, the
submodules whose arithmetic bf16/fp16 would spoil and that cost little to keep in float32: the
encoder's CMVN (log-mel features of ~10-20 minus a mean of the same size: bf16 keeps 3 significant
digits, the difference would keep about one) and the vocoder's HiFT (phase accumulation, STFT and
iSTFT; CosyVoice 2 also keeps HiFT in float32 when it runs the flow in fp16). Everything else runs
in the served dtype, caches and stream state included, so the memory the budget counts is the
memory the GPU holds.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def parse_dtype(name: str) -> torch.dtype:
    """``float32`` / ``bfloat16`` / ``float16`` -> the torch dtype; ValueError naming the choices otherwise."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not served; expected one of {', '.join(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"{dtype} is not a served dtype; expected one of {', '.join(DTYPES)}")


def float32_parts(module: nn.Module) -> tuple[str, ...]:
    """Submodules (or buffers) a stage keeps in float32: its class attribute ``FLOAT32_PARTS``."""
    return tuple(getattr(module, "FLOAT32_PARTS", ()))


def cast_for_serving(module: ModuleT, dtype: torch.dtype) -> ModuleT:
    """Cast ``module``'s floating weights and buffers to ``dtype``, except its ``FLOAT32_PARTS``. In place."""
    parse_dtype(dtype_name(dtype))
    module.to(dtype)
    for name in float32_parts(module):
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        if leaf in owner._buffers and owner._buffers[leaf] is not None:
            owner._buffers[leaf] = owner._buffers[leaf].float()  # type: ignore[union-attr]
        else:
            module.get_submodule(name).float()
    return module


def compute_dtype(module: nn.Module) -> torch.dtype:
    """The dtype the stage computes in: that of its first weight outside the float32 parts."""
    kept = float32_parts(module)
    for name, parameter in module.named_parameters():
        if not any(name == part or name.startswith(part + ".") for part in kept):
            return parameter.dtype
    return torch.float32
