"""Reading a Triton request: its sequence controls and its input tensors as numpy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from minmo_contracts.controls import SEQUENCE_END, SEQUENCE_START, STOP
from minmo_contracts.validation import Getter, InvalidInputError


@dataclass(frozen=True)
class SequenceFlags:
    stream_id: int
    start: bool
    end: bool


def sequence_flags(request: Any) -> SequenceFlags:
    """Read the correlation id and the START/END controls the sequence batcher filled in."""
    stream_id = int(request.correlation_id())
    if stream_id == 0:
        raise InvalidInputError(
            "this model is stateful: send a non-zero sequence_id (correlation id) with every request"
        )

    return SequenceFlags(
        stream_id=stream_id, start=_bool_input(request, SEQUENCE_START), end=_bool_input(request, SEQUENCE_END)
    )


def stop_requested(request: Any) -> bool:
    """A STOP request asks to end the request of its stream that has the same request id (no other input counts)."""
    return _bool_input(request, STOP.name)


def _bool_input(request: Any, name: str) -> bool:
    """A scalar flag input (sequence control or STOP); absent means false."""
    import triton_python_backend_utils as pb_utils

    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return bool(tensor is not None and tensor.as_numpy().reshape(-1)[0])


def input_getter(request: Any) -> Getter:
    """A getter over the request's inputs for the contracts' ``parse`` methods (:mod:`minmo_contracts`)."""
    import triton_python_backend_utils as pb_utils

    def get(name: str) -> np.ndarray | None:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        return None if tensor is None else tensor.as_numpy()

    return get
