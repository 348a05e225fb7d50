"""A :class:`~services.model_configs.spec.ModelConfig` as ``config.pbtxt`` text, commented for readers.

One entry per line, comments above what they explain: the files are read by people (newcomers start
at ``model_repository/``) as much as by Triton, so the writer keeps the layout a person would write.
"""

from __future__ import annotations

from minmo_contracts.controls import SEQUENCE_END, SEQUENCE_START
from minmo_contracts.spec import TensorSpec
from services.model_configs.spec import Instances, ModelConfig, Parameter

# The same for every model: each stream's requests stay on one instance and in order, its state is
# opened by START and closed by END, and an abandoned one is released after the idle timeout.
_SEQUENCE_NOTE = (
    "Every request of a stream carries its correlation id (sequence_id); START opens the stream's\n"
    "state, END closes it. The sequence batcher keeps a stream on one instance. A stream idle longer\n"
    "than the timeout is released here and expired by the model (stream_idle_seconds), which then\n"
    "answers INVALID_ARG until the client starts it again."
)
_SEQUENCE_BATCHING = f"""sequence_batching {{
  max_sequence_idle_microseconds: 600000000
  oldest {{ max_candidate_sequences: 256 max_queue_delay_microseconds: 0 }}
  control_input [
    {{ name: "{SEQUENCE_START}" control [ {{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "{SEQUENCE_END}" control [ {{ kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] }} ] }}
  ]
}}"""


def render(config: ModelConfig) -> str:
    lines = [
        *_comment(config.summary),
        f'name: "{config.name}"',
        f'backend: "{config.backend}"',
        *_comment(config.batching_note),
        f"max_batch_size: {config.max_batch_size}",
    ]
    if config.contract.decoupled:
        lines.append("model_transaction_policy { decoupled: true }")
    lines += [*_comment(_SEQUENCE_NOTE), _SEQUENCE_BATCHING]
    lines += _list("input", [(t.doc, _tensor(t)) for t in config.contract.inputs])
    lines += _list("output", [(t.doc, _tensor(t)) for t in config.contract.outputs])
    lines += [*_comment(config.instances.note), _instances(config.instances)]
    lines += _list("parameters", [(p.note, _parameter(p)) for p in config.parameters])
    return "\n".join(lines) + "\n"


def _comment(text: str, indent: str = "") -> list[str]:
    return [f"{indent}# {line}" for line in text.splitlines()] if text else []


def _list(field: str, entries: list[tuple[str, str]]) -> list[str]:
    lines = [f"{field} ["]
    for index, (note, entry) in enumerate(entries):
        comma = "," if index < len(entries) - 1 else ""
        lines += [*_comment(note, "  "), f"  {entry}{comma}"]
    return [*lines, "]"]


def _tensor(spec: TensorSpec) -> str:
    dims = ", ".join(str(d) for d in spec.dims)
    flags = (" optional: true" if spec.optional else "") + (" allow_ragged_batch: true" if spec.ragged else "")
    return f'{{ name: "{spec.name}" data_type: {spec.triton_type} dims: [ {dims} ]{flags} }}'


def _instances(instances: Instances) -> str:
    gpus = f" gpus: [ {instances.gpus} ]" if instances.gpus else ""
    return f"instance_group [ {{ kind: {instances.kind} count: {instances.count}{gpus} }} ]"


def _parameter(parameter: Parameter) -> str:
    return f'{{ key: "{parameter.key}" value: {{ string_value: "{parameter.value}" }} }}'
