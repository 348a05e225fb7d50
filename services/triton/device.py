"""Which device a model instance computes on: Triton says so in the ``args`` of ``initialize``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def instance_device(args: Mapping[str, Any]) -> torch.device:
    """``cuda:<model_instance_device_id>`` for a KIND_GPU instance, the CPU otherwise.

    The same adapter serves both profiles: the smoke configs declare KIND_CPU, the GPU profile's
    generated configs KIND_GPU with the pool's device ids, and Triton fills in which one this is.
    """
    if str(args.get("model_instance_kind", "CPU")).upper() == "GPU":
        return torch.device("cuda", int(args.get("model_instance_device_id", 0)))
    return torch.device("cpu")
