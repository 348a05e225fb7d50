"""The tensor contracts of the five Triton models, the one definition both sides use (numpy only).

Per model (``encoder``, ``backbone``, ``duplex``, ``speech_lm``, ``vocoder``) one module holds its
tensors (:class:`~minmo_contracts.spec.TensorSpec`: name, dtype, dims), the request builders and the
response readers the orchestrator uses, the ``parse`` of its requests and the ``tensors`` of its
responses the Triton adapter uses, and the model's ``config.pbtxt`` is generated from the same specs
(``services.model_configs``). Nothing here imports torch, Triton or the orchestrator.
docs/contracts.md says where a tensor is defined and how to add one.
"""

from __future__ import annotations

from minmo_contracts import backbone, duplex, encoder, speech_lm, vocoder
from minmo_contracts.spec import ModelContract, Tensors, TensorSpec

CONTRACTS: dict[str, ModelContract] = {
    module.CONTRACT.name: module.CONTRACT for module in (encoder, backbone, duplex, speech_lm, vocoder)
}
MODELS = tuple(CONTRACTS)

__all__ = ["CONTRACTS", "MODELS", "ModelContract", "TensorSpec", "Tensors"]
