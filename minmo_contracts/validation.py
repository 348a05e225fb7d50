"""Checking a request's tensors on the model side: every bad tensor becomes an :class:`InvalidInputError`
whose message names the tensor and says what was expected, so the client can fix its request.

The ``parse`` methods of the contracts read inputs through a :data:`Getter` (a tensor as numpy, batch
dimension included, or None when absent), so the same checks run inside Triton and in plain unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Getter = Callable[[str], "np.ndarray | None"]


class InvalidInputError(ValueError):
    """A request tensor is malformed; the adapter answers it with INVALID_ARG and keeps serving."""


def check_array(
    name: str,
    array: np.ndarray,
    *,
    dtypes: Sequence[type | np.dtype],
    ndim: int,
    allow_empty: bool = False,
    width: int | None = None,
) -> np.ndarray:
    """Return ``array`` if it has one of ``dtypes``, ``ndim`` dimensions, and finite values."""
    allowed = [np.dtype(d) for d in dtypes]
    if array.dtype not in allowed:
        names = " or ".join(d.name for d in allowed)
        raise InvalidInputError(f"input {name} must be {names}, got {array.dtype.name}")
    if array.ndim != ndim:
        raise InvalidInputError(f"input {name} must have {ndim} dimension(s), got shape {list(array.shape)}")
    if not allow_empty and array.size == 0:
        raise InvalidInputError(f"input {name} is empty")
    if width is not None and array.shape[-1] != width:
        raise InvalidInputError(f"input {name} must have {width} values in its last dimension, got {array.shape[-1]}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise InvalidInputError(f"input {name} contains NaN or Inf values")
    return array


def scalar(name: str, array: np.ndarray | None, default: float | int | bool) -> float | int | bool:
    """Read a one-element control tensor (any leading batch dims), or ``default`` when absent."""
    if array is None:
        return default
    if array.size != 1:
        raise InvalidInputError(f"input {name} must hold exactly one value, got shape {list(array.shape)}")
    value = array.reshape(-1)[0]
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(value):
        raise InvalidInputError(f"input {name} must be finite")
    return float(value)


def strip_batch(name: str, array: np.ndarray) -> np.ndarray:
    """Drop the leading batch dimension of 1 every request carries (the Python backend hands a batch of
    streams over as a list of requests, each with its own inputs, never as one bigger dimension)."""
    if array.ndim == 0 or array.shape[0] != 1:
        raise InvalidInputError(f"input {name} must carry a batch dimension of 1, got shape {list(array.shape)}")
    return array[0]


def optional(get: Getter, name: str) -> np.ndarray | None:
    """An input without its batch dimension, or None when the request does not carry it."""
    array = get(name)
    return None if array is None else strip_batch(name, array)


def token_ids(get: Getter, name: str, vocab_size: int) -> list[int]:
    """An optional 1-D id input as a list (empty when absent), every id checked against the vocabulary."""
    array = optional(get, name)
    if array is None:
        return []
    check_array(name, array, dtypes=[np.int32, np.int64], ndim=1, allow_empty=True)
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        raise InvalidInputError(
            f"input {name} holds ids outside [0, {vocab_size}): min {array.min()}, max {array.max()}"
        )
    return [int(x) for x in array]
