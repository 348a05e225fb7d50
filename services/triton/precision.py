"""The ``dtype`` model parameter: which precision an adapter serves its stage in.

Read once in ``initialize()``: an unknown value fails the model load naming the choices. Absent, a
stage is served in float32 (the CPU smoke profile); the GPU profile's generated configs set it from
the values file's ``stage_dtype``.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

from services.common.precision import DTYPES, cast_for_serving
from services.triton.params import ModelParameters, ParameterError

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def model_dtype(params: ModelParameters) -> torch.dtype:
    name = params.get_str("dtype", "float32")
    if name not in DTYPES:
        raise ParameterError(
            f"model {params.model_name!r}: parameter 'dtype'={name!r} is not served; expected one of "
            f"{', '.join(DTYPES)}"
        )
    return DTYPES[name]


def serve(module: ModuleT, params: ModelParameters, device: torch.device) -> ModuleT:
    """The stage as the adapter serves it: cast to the configured dtype, on the instance's device."""
    return cast_for_serving(module, model_dtype(params)).to(device)
