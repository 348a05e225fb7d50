"""What a model's ``config.pbtxt`` says besides its tensors: batching, placement and parameters.

The tensors come from the model's contract (:mod:`minmo_contracts`); everything else is here, as
data, so the CPU repository and the GPU profile are two instances of one description and
:mod:`services.model_configs.pbtxt` writes both the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from minmo_contracts import ModelContract


@dataclass(frozen=True)
class Parameter:
    """One ``parameters`` entry; ``note`` is the comment above it (why the value is what it is)."""

    key: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class Instances:
    """``instance_group``: ``count`` and ``gpus`` are strings so a GPU template can hold ``${...}`` there."""

    kind: str = "KIND_CPU"
    count: str = "1"
    gpus: str = ""  # KIND_GPU only: the comma-separated device ids
    note: str = ""


@dataclass(frozen=True)
class ModelConfig:
    contract: ModelContract
    summary: str  # the header comment: what the model does
    batching_note: str  # why max_batch_size is what it is
    parameters: tuple[Parameter, ...]
    instances: Instances = Instances()
    max_batch_size: int = 16
    backend: str = "python"

    @property
    def name(self) -> str:
        return self.contract.name

    def parameter(self, key: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.key == key:
                return parameter
        raise KeyError(f"{self.name} has no parameter {key}")

    def with_parameter(self, key: str, value: str, note: str | None = None) -> ModelConfig:
        """A copy with parameter ``key`` set (in its place), its note kept unless ``note`` is given."""
        self.parameter(key)
        changed = tuple(
            replace(p, value=value, note=p.note if note is None else note) if p.key == key else p
            for p in self.parameters
        )
        return replace(self, parameters=changed)

    def with_parameter_after(self, after: str, parameter: Parameter) -> ModelConfig:
        """A copy with ``parameter`` added right after parameter ``after``."""
        self.parameter(after)
        added: list[Parameter] = []
        for existing in self.parameters:
            added.append(existing)
            if existing.key == after:
                added.append(parameter)
        return replace(self, parameters=tuple(added))
