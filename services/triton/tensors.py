"""Input validation for the Triton adapters: defined with the contracts (:mod:`minmo_contracts.validation`).

Kept as this name because the adapters' helpers (serving, responses, the GPU backbone) import
:class:`InvalidInputError` from here; it is the same class.
"""

from minmo_contracts.validation import InvalidInputError, check_array, scalar, strip_batch

__all__ = ["InvalidInputError", "check_array", "scalar", "strip_batch"]
