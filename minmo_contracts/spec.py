"""What a tensor contract is made of: named, typed tensors, grouped per Triton model.

A :class:`TensorSpec` is the one place a tensor's name, dtype and dims are written. The model's
``config.pbtxt`` is generated from it (``services.model_configs``), the Triton adapter parses its
requests with it and the orchestrator builds its requests and reads the responses with it, so a
renamed tensor changes here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# Arrays without the batch dimension: what the orchestrator sends (its client adds the batch
# dimension every config declares) and what it reads back (its client strips it).
Tensors = Mapping[str, np.ndarray]

# numpy dtype -> the config's data_type (Triton's names; the wire format drops the TYPE_ prefix).
_TRITON_TYPES = {
    np.dtype(np.bool_): "TYPE_BOOL",
    np.dtype(np.int32): "TYPE_INT32",
    np.dtype(np.int64): "TYPE_INT64",
    np.dtype(np.uint64): "TYPE_UINT64",
    np.dtype(np.float32): "TYPE_FP32",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model: ``dims`` as in ``config.pbtxt`` (-1 = any size, batch excluded).

    ``doc`` is the comment the generated config carries above the tensor: what a client must know.
    """

    name: str
    dtype: type[np.generic]
    dims: tuple[int, ...]
    optional: bool = False
    ragged: bool = False
    doc: str = ""

    def __post_init__(self) -> None:
        if np.dtype(self.dtype) not in _TRITON_TYPES:
            raise ValueError(f"tensor {self.name}: dtype {np.dtype(self.dtype).name} has no Triton type here")

    @property
    def triton_type(self) -> str:
        return _TRITON_TYPES[np.dtype(self.dtype)]

    @property
    def rank(self) -> int:
        return len(self.dims)

    def array(self, values: Any) -> np.ndarray:
        """``values`` as this tensor: cast to its dtype; a wrong rank is a bug of the caller, said at once."""
        array = np.asarray(values, dtype=self.dtype)
        if array.ndim != self.rank:
            raise ValueError(f"tensor {self.name} has {self.rank} dimension(s), got shape {list(array.shape)}")
        return array

    def scalar(self, value: bool | int | float) -> np.ndarray:
        """A one-value control tensor (dims ``[1]``)."""
        if self.dims != (1,):
            raise ValueError(f"tensor {self.name} is not a one-value tensor (dims {list(self.dims)})")
        return np.array([value], dtype=self.dtype)

    def read(self, outputs: Tensors) -> np.ndarray:
        """This output of a response (batch dimension stripped); a missing one is a KeyError naming it."""
        return outputs[self.name]


@dataclass(frozen=True)
class ModelContract:
    """A model's name and every tensor it takes and returns; the generated config declares exactly these."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    decoupled: bool

    def __post_init__(self) -> None:
        for kind, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [t.name for t in specs]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"model {self.name}: {kind} declared twice: {twice}")

    def input(self, name: str) -> TensorSpec:
        return _find(self.inputs, name, f"{self.name} has no input {name}")

    def output(self, name: str) -> TensorSpec:
        return _find(self.outputs, name, f"{self.name} has no output {name}")


def _find(specs: tuple[TensorSpec, ...], name: str, message: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(message)
