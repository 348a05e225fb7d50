"""The Triton side of the tensor contracts: request views to parse and a model's response to send.

The contracts themselves (names, dtypes, shapes, ``parse``, the response views) live in
``minmo_contracts``, where the orchestrator builds its requests and reads the responses from the
same definitions. Each ``parse`` takes a getter that returns an input tensor as numpy (batch dimension
included) or None when absent, so the same validation runs inside Triton and in plain unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from minmo_contracts.backbone import BackboneRequest
from minmo_contracts.duplex import DuplexRequest
from minmo_contracts.encoder import EncoderRequest
from minmo_contracts.sampling import Sampling
from minmo_contracts.speech_lm import SpeechLMRequest
from minmo_contracts.validation import Getter
from minmo_contracts.vocoder import VocoderRequest

__all__ = [
    "BackboneRequest",
    "DuplexRequest",
    "EncoderRequest",
    "Getter",
    "Sampling",
    "SpeechLMRequest",
    "VocoderRequest",
    "batched",
    "response",
]


def batched(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A response view's tensors with the batch dimension of 1 every output carries."""
    return {name: array[None] for name, array in tensors.items()}


def response(tensors: Mapping[str, np.ndarray]) -> Any:
    """The ``InferenceResponse`` of a contract's response view (``BackboneOutput(...).tensors()`` and so on)."""
    import triton_python_backend_utils as pb_utils

    return pb_utils.InferenceResponse([pb_utils.Tensor(name, array) for name, array in batched(tensors).items()])
