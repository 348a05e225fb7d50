"""A fingerprint of module weights, to tie the trained predictor to the features it was trained on."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def weights_fingerprint(*modules: nn.Module) -> str:
    """sha256 over the modules' state dicts (names, dtypes, shapes, bytes), in the order given.

    The duplex predictor records ``weights_fingerprint(encoder, backbone)`` of the stages it read
    hidden states from; the weights build compares it with the stages it ships.
    """
    digest = hashlib.sha256()
    for index, module in enumerate(modules):
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{index}:{name}:{t.dtype}:{tuple(t.shape)}".encode())
            if t.numel():
                digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
