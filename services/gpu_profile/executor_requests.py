"""The GPU backbone's requests to the TensorRT-LLM executor, and its results mapped back: no GPU needed.

Why the backbone drives the executor itself: Triton's ``tensorrtllm`` backend never sets the
executor's additional model outputs (neither in its ``ExecutorConfig`` nor per request), so an engine
that marks ``hidden_states`` (:mod:`services.gpu_profile.hidden_states`) still returns none through it.
Our ``backbone`` Python model (``templates/backbone_model.py.tmpl``) therefore owns one
``tensorrt_llm.bindings.executor.Executor`` and asks for the output twice, as the executor requires:

- in the ``ExecutorConfig`` (``additional_model_outputs``), so the runtime allocates and gathers it;
- in every request's ``OutputConfig`` (``additional_model_outputs``, ``gather_context=True``), so the
  result carries it: ``context_hidden_states`` (``[computed prompt positions, hidden]``, first
  response) and ``generation_hidden_states`` (one row per generated token).

Written against TensorRT-LLM 0.20.0, the version in Triton 25.06's ``trtllm-python-py3`` image
(``docker/triton.Dockerfile``): ``Request(input_token_ids, max_tokens, streaming=, sampling_config=,
output_config=, end_id=, pad_id=, prompt_tuning_config=)``, ``SamplingConfig(beam_width, top_k=,
top_p=, seed=, temperature=)``, ``OutputConfig(exclude_input_from_output=, additional_model_outputs=)``,
``PromptTuningConfig(embedding_table, input_token_extra_ids)``, ``Result.output_token_ids`` /
``additional_outputs`` (``.name``, ``.output``). The bindings module is passed in, so the tests drive
these functions with a recording stand-in (``tensorrt_llm`` needs a CUDA GPU to import).

The KV-reuse caveat: with ``enable_block_reuse`` the engine skips the prompt blocks it already holds
and gathers context outputs only for the positions it computes. Every request resends the stream's
whole context, so the prefix is reused (that is the point) and only the appended positions are
computed: their hidden states are the last rows of ``context_hidden_states``. But a block of the
appended positions could also match one another request computed (a fork appending the same audio,
a retry after STOP), and then its rows would be missing. :class:`EngineContext` therefore gives
every appended position a fresh per-append extra id (``input_token_extra_ids``), so appended
positions never match another request's blocks while the stream's own prefix still does; and
:func:`engine_step` checks the count and names the cause if rows are missing anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from minmo_contracts.backbone import BackboneRequest
from services.gpu_profile.engine_context import EngineInput
from services.gpu_profile.hidden_states import HIDDEN_OUTPUT
from services.gpu_profile.trtllm_adapter import EngineContractError, EngineStep

CONTEXT_OUTPUT = f"context_{HIDDEN_OUTPUT}"
GENERATION_OUTPUT = f"generation_{HIDDEN_OUTPUT}"
POLICIES = {"guaranteed_no_evict": "GUARANTEED_NO_EVICT", "max_utilization": "MAX_UTILIZATION"}


@dataclass(frozen=True)
class ExecutorSettings:
    """What the executor is built with; the generated ``backbone/config.pbtxt`` carries these values."""

    engine_dir: str
    max_batch_size: int
    kv_cache_free_gpu_mem_fraction: float
    enable_kv_cache_reuse: bool
    batch_scheduler_policy: str
    gpu_device_ids: list[int]

    def __post_init__(self) -> None:
        if self.batch_scheduler_policy not in POLICIES:
            raise ValueError(
                f"batch_scheduler_policy {self.batch_scheduler_policy!r}: expected one of {', '.join(POLICIES)}"
            )
        if not 0 < self.kv_cache_free_gpu_mem_fraction <= 1:
            raise ValueError("kv_cache_free_gpu_mem_fraction must be in (0, 1]")


def hidden_output(tle: Any) -> Any:
    """The additional output this model needs, context positions included."""
    return tle.AdditionalModelOutput(HIDDEN_OUTPUT, gather_context=True)


def executor_config(tle: Any, settings: ExecutorSettings) -> Any:
    """``ExecutorConfig``: in-flight batching, KV reuse and chunked context, and the hidden-states output."""
    return tle.ExecutorConfig(
        max_beam_width=1,
        scheduler_config=tle.SchedulerConfig(
            getattr(tle.CapacitySchedulerPolicy, POLICIES[settings.batch_scheduler_policy])
        ),
        kv_cache_config=tle.KvCacheConfig(
            enable_block_reuse=settings.enable_kv_cache_reuse,
            free_gpu_memory_fraction=settings.kv_cache_free_gpu_mem_fraction,
        ),
        enable_chunked_context=True,
        batching_type=tle.BatchingType.INFLIGHT,
        max_batch_size=settings.max_batch_size,
        parallel_config=tle.ParallelConfig(
            tle.CommunicationType.MPI, tle.CommunicationMode.LEADER, device_ids=list(settings.gpu_device_ids)
        ),
        additional_model_outputs=[hidden_output(tle)],
    )


def build_request(tle: Any, inp: EngineInput, job: BackboneRequest, *, end_id: int, pad_id: int, table: Any) -> Any:
    """One streamed request for the stream's whole context.

    ``table`` is ``inp.prompt_table`` as the engine dtype's tensor on the GPU (the caller converts: numpy
    has no bf16). ``max_tokens`` is at least 1: the engine always samples once; MAX_NEW_TOKENS 0 drops it.
    """
    greedy = job.sampling.temperature <= 0
    sampling = tle.SamplingConfig(
        1,
        top_k=1 if greedy else job.sampling.top_k or None,
        top_p=None if greedy else job.sampling.top_p,
        seed=job.sampling.seed,
        temperature=None if greedy else job.sampling.temperature,
    )
    output = tle.OutputConfig(exclude_input_from_output=True, additional_model_outputs=[hidden_output(tle)])
    tuning = tle.PromptTuningConfig(table, [int(e) for e in inp.extra_ids])
    return tle.Request(
        [int(i) for i in inp.input_ids],
        max(job.max_new_tokens, 1),
        streaming=True,
        sampling_config=sampling,
        output_config=output,
        end_id=end_id,
        pad_id=pad_id,
        prompt_tuning_config=tuning,
    )


def _rows(tensor: Any, width: int) -> np.ndarray:
    """An executor tensor (torch, on the GPU or the host) as float32 rows ``[n, width]``."""
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().float().cpu().numpy()
    return np.asarray(tensor, np.float32).reshape(-1, width)


def engine_step(result: Any, *, width: int, first: bool, appended: int) -> EngineStep:
    """One streamed ``Result`` -> the new token and the hidden rows the bridge pairs it with.

    The first response carries the context rows (at least the ``appended`` computed positions, the
    last of them the state the first token was sampled from); every later one the generation row.
    """
    outputs = {o.name: o.output for o in result.additional_outputs}
    tokens = [int(t) for t in result.output_token_ids[0]]
    if first:
        if CONTEXT_OUTPUT not in outputs:
            raise EngineContractError(
                f"the executor returned no {CONTEXT_OUTPUT} (got {sorted(outputs)}): build the engine with "
                "services/gpu_profile/hidden_states.py and request the output in the ExecutorConfig"
            )
        rows = _rows(outputs[CONTEXT_OUTPUT], width)
        if rows.shape[0] < max(appended, 1):
            raise EngineContractError(
                f"{CONTEXT_OUTPUT} has {rows.shape[0]} rows for {appended} appended positions: KV-cache reuse "
                "skipped some of them (their extra ids matched another request's blocks)"
            )
        return EngineStep(token_ids=tokens, hidden=rows)
    if GENERATION_OUTPUT not in outputs:
        raise EngineContractError(f"a generation response carried no {GENERATION_OUTPUT} (got {sorted(outputs)})")
    return EngineStep(token_ids=tokens, hidden=_rows(outputs[GENERATION_OUTPUT], width)[-1:])
