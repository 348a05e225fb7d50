"""The one values source of a GPU deployment: sizes, paths and pool layout, read from YAML.

Every key is declared here; an unknown key (a typo) or a missing one fails with its name, because a
silently defaulted engine size is found only when a long conversation hits it in production.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

WeightOnly = Literal["none", "int8", "int4"]
SchedulerPolicy = Literal["guaranteed_no_evict", "max_utilization"]
EngineDtype = Literal["bfloat16", "float16"]
# What the four KIND_GPU PyTorch stages are served in (their adapters' `dtype` parameter).
StageDtype = Literal["float32", "bfloat16", "float16"]
STAGES = ("encoder", "duplex", "speech_lm", "vocoder")
# KIND_GPU stages that run the in-model step scheduler (services/triton/scheduler.py); the unary encoder
# and duplex batch through Triton (max_batch_size), the backbone in the engine.
STEP_SCHEDULED = ("speech_lm", "vocoder")
# The CPU configs' max_step_batch (services.triton.serving.DEFAULT_MAX_STEP_BATCH; a unit test keeps them equal).
DEFAULT_MAX_STEP_BATCH = 64


class ValuesError(ValueError):
    """The values file is missing a key, has an unknown one, or a value out of range."""


@dataclass(frozen=True)
class GpuValues:
    """Sizes of one GPU pool. Paths are as the Triton pod sees them (mounted volumes).

    ``max_prompt_rows`` bounds the speech positions one request may carry: every backbone request
    resends its whole context (KV blocks are reused, not recomputed), so the prompt table holds all
    speech rows of the conversation so far, about 8.3 per second of user speech.

    ``max_step_batch`` caps the streams one scheduler step of a :data:`STEP_SCHEDULED` stage runs
    together (default :data:`DEFAULT_MAX_STEP_BATCH`, as on the CPU). On the GPU the cap is what bounds
    a step's activation memory, which ``perf/memory_budget.py`` counts per instance.
    """

    hf_model_dir: str
    checkpoint_dir: str
    engine_dir: str
    weights_dir: str
    convert_script: str
    engine_dtype: EngineDtype
    stage_dtype: StageDtype
    weight_only: WeightOnly
    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    max_num_tokens: int
    max_prompt_rows: int
    kv_cache_free_gpu_mem_fraction: float
    enable_kv_cache_reuse: bool
    batch_scheduler_policy: SchedulerPolicy
    gpu_device_ids: list[int]
    instances: dict[str, int] = field(default_factory=dict)
    max_step_batch: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens", "max_prompt_rows"):
            if getattr(self, name) < 1:
                raise ValuesError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_input_len > self.max_seq_len:
            raise ValuesError(f"max_input_len {self.max_input_len} exceeds max_seq_len {self.max_seq_len}")
        if not 0 < self.kv_cache_free_gpu_mem_fraction <= 1:
            raise ValuesError(
                f"kv_cache_free_gpu_mem_fraction must be in (0, 1], got {self.kv_cache_free_gpu_mem_fraction}"
            )
        if not self.gpu_device_ids:
            raise ValuesError("gpu_device_ids must name at least one GPU, e.g. [0]")
        unknown = sorted(set(self.instances) - {*STAGES, "backbone"})
        if unknown:
            raise ValuesError(f"instances: unknown models {unknown}; expected some of {['backbone', *STAGES]}")
        if any(count < 1 for count in self.instances.values()):
            raise ValuesError(f"instances: every count must be >= 1, got {self.instances}")
        if self.instance_count("backbone") != 1:
            raise ValuesError(
                f"instances: backbone must be 1, got {self.instance_count('backbone')}: one process drives the "
                "engine's one executor, which batches in flight itself"
            )
        unknown = sorted(set(self.max_step_batch) - set(STEP_SCHEDULED))
        if unknown:
            raise ValuesError(
                f"max_step_batch: unknown models {unknown}; only {list(STEP_SCHEDULED)} run a step scheduler"
            )
        if any(cap < 1 for cap in self.max_step_batch.values()):
            raise ValuesError(f"max_step_batch: every cap must be >= 1, got {self.max_step_batch}")

    @property
    def max_prompt_embedding_table_size(self) -> int:
        """trtllm-build's table bound is for the whole in-flight batch, not one request."""
        return self.max_batch_size * self.max_prompt_rows

    def instance_count(self, model: str) -> int:
        return self.instances.get(model, 1)

    def step_batch(self, stage: str) -> int:
        """Most streams one scheduler step of ``stage`` runs together."""
        if stage not in STEP_SCHEDULED:
            raise ValueError(f"{stage} runs no step scheduler; expected one of {list(STEP_SCHEDULED)}")
        return self.max_step_batch.get(stage, DEFAULT_MAX_STEP_BATCH)

    @property
    def backbone_worker_threads(self) -> int:
        """Threads of the backbone model: each holds one executor request for as long as it streams.

        Every request runs on a worker thread that waits on the executor's responses, so the requests
        in flight in the engine are at most this many; fewer than the engine's ``max_batch_size`` would
        leave in-flight batching slots empty while requests queue in the model.
        """
        return math.ceil(self.max_batch_size / self.instance_count("backbone"))

    @classmethod
    def from_mapping(cls, raw: Any) -> GpuValues:
        if not isinstance(raw, dict):
            raise ValuesError(f"the values file must be a mapping of keys to values, got {type(raw).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise ValuesError(f"unknown values: {', '.join(unknown)} (known: {', '.join(sorted(fields))})")
        required = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in raw]
        if missing:
            raise ValuesError(f"missing values: {', '.join(missing)}")
        for name, value in raw.items():
            _check_type(name, value, cls.__annotations__[name])
        return cls(**raw)

    @classmethod
    def load(cls, path: Path) -> GpuValues:
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ValuesError(f"{path}: not valid YAML: {exc}") from exc
        try:
            return cls.from_mapping(raw)
        except ValuesError as exc:
            raise ValuesError(f"{path}: {exc}") from exc


def _check_type(name: str, value: Any, annotation: str) -> None:
    """YAML gives ``8192`` and ``"8192"`` different types; refuse the wrong one instead of coercing."""
    choices = {
        "WeightOnly": WeightOnly,
        "SchedulerPolicy": SchedulerPolicy,
        "EngineDtype": EngineDtype,
        "StageDtype": StageDtype,
    }
    if annotation in choices:
        allowed = get_args(choices[annotation])
        if value not in allowed:
            raise ValuesError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return
    expected: dict[str, Any] = {
        "str": str,
        "int": int,
        "float": (int, float),
        "bool": bool,
        "list[int]": list,
        "dict[str, int]": dict,
    }
    kind = expected[annotation]
    wrong_bool = isinstance(value, bool) and annotation in ("int", "float")
    if wrong_bool or not isinstance(value, kind):
        raise ValuesError(f"{name} must be {annotation}, got {value!r}")
    if annotation == "list[int]" and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValuesError(f"{name} must be a list of integers, got {value!r}")
    if annotation == "dict[str, int]" and not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    ):
        raise ValuesError(f"{name} must map model names to integer counts, got {value!r}")
