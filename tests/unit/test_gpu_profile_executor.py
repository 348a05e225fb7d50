"""The executor-driven GPU backbone without a GPU: requests built, results mapped, the KV-reuse caveat.

``tensorrt_llm`` cannot be imported here (it needs CUDA), so these tests hand the request builders
:class:`FakeExecutorBindings`, a stand-in for ``tensorrt_llm.bindings.executor`` whose constructors
take exactly the keyword names of TensorRT-LLM 0.20.0's pybind signatures for the arguments we use
(a misspelt name raises TypeError here, as it would there) and record what they were given.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from services.gpu_profile.engine_context import EngineContext
from services.gpu_profile.executor_requests import (
    CONTEXT_OUTPUT,
    GENERATION_OUTPUT,
    ExecutorSettings,
    build_request,
    engine_step,
    executor_config,
)
from services.gpu_profile.hidden_states import HIDDEN_OUTPUT
from services.gpu_profile.trtllm_adapter import EngineContractError, backbone_responses
from services.triton.contracts import BackboneRequest

VOCAB, WIDTH = 100, 4


@dataclass
class Recorded:
    """What a fake bindings constructor was called with."""

    kind: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name in self.kwargs:
            return self.kwargs[name]
        raise AttributeError(name)


def _recorder(kind: str, positional: tuple[str, ...], keywords: tuple[str, ...]) -> Any:
    def make(*args: Any, **kwargs: Any) -> Recorded:
        if len(args) > len(positional):
            raise TypeError(f"{kind}() takes {len(positional)} positional arguments")
        unknown = set(kwargs) - set(keywords) - set(positional[len(args) :])
        if unknown:
            raise TypeError(f"{kind}() got unexpected keyword arguments {sorted(unknown)}")
        return Recorded(kind, args, kwargs)

    return make


class FakeExecutorBindings(types.SimpleNamespace):
    """Stand-in for ``tensorrt_llm.bindings.executor`` (0.20.0 names), which needs a GPU to import."""

    def __init__(self) -> None:
        super().__init__(
            AdditionalModelOutput=_recorder("AdditionalModelOutput", ("name",), ("gather_context",)),
            OutputConfig=_recorder(
                "OutputConfig",
                (),
                (
                    "return_log_probs",
                    "return_context_logits",
                    "return_generation_logits",
                    "exclude_input_from_output",
                    "return_encoder_output",
                    "return_perf_metrics",
                    "additional_model_outputs",
                ),
            ),
            SamplingConfig=_recorder(
                "SamplingConfig",
                ("beam_width",),
                (
                    "top_k",
                    "top_p",
                    "top_p_min",
                    "top_p_reset_ids",
                    "top_p_decay",
                    "seed",
                    "temperature",
                    "min_tokens",
                    "repetition_penalty",
                    "presence_penalty",
                    "frequency_penalty",
                ),
            ),
            PromptTuningConfig=_recorder("PromptTuningConfig", ("embedding_table", "input_token_extra_ids"), ()),
            Request=_recorder(
                "Request",
                ("input_token_ids", "max_tokens"),
                (
                    "streaming",
                    "sampling_config",
                    "output_config",
                    "end_id",
                    "pad_id",
                    "position_ids",
                    "bad_words",
                    "stop_words",
                    "embedding_bias",
                    "prompt_tuning_config",
                    "client_id",
                ),
            ),
            ExecutorConfig=_recorder(
                "ExecutorConfig",
                (),
                (
                    "max_beam_width",
                    "scheduler_config",
                    "kv_cache_config",
                    "enable_chunked_context",
                    "normalize_log_probs",
                    "batching_type",
                    "max_batch_size",
                    "max_num_tokens",
                    "parallel_config",
                    "additional_model_outputs",
                ),
            ),
            SchedulerConfig=_recorder("SchedulerConfig", ("capacity_scheduler_policy",), ()),
            KvCacheConfig=_recorder(
                "KvCacheConfig", (), ("enable_block_reuse", "max_tokens", "free_gpu_memory_fraction", "host_cache_size")
            ),
            ParallelConfig=_recorder(
                "ParallelConfig", ("communication_type", "communication_mode"), ("device_ids", "participant_ids")
            ),
            CapacitySchedulerPolicy=types.SimpleNamespace(GUARANTEED_NO_EVICT="gne", MAX_UTILIZATION="mu"),
            BatchingType=types.SimpleNamespace(INFLIGHT="inflight", STATIC="static"),
            CommunicationType=types.SimpleNamespace(MPI="mpi"),
            CommunicationMode=types.SimpleNamespace(LEADER="leader"),
        )


@pytest.fixture
def tle() -> FakeExecutorBindings:
    return FakeExecutorBindings()


SETTINGS = ExecutorSettings(
    engine_dir="/engine",
    max_batch_size=16,
    kv_cache_free_gpu_mem_fraction=0.58,
    enable_kv_cache_reuse=True,
    batch_scheduler_policy="guaranteed_no_evict",
    gpu_device_ids=[0],
)


def job(**inputs: Any) -> BackboneRequest:
    return BackboneRequest.parse(
        {k: np.asarray(v) for k, v in inputs.items()}.get, vocab_size=VOCAB, width=WIDTH, max_new_tokens_limit=64
    )


def test_the_executor_config_asks_for_the_hidden_states_with_their_context(tle: FakeExecutorBindings) -> None:
    config = executor_config(tle, SETTINGS)
    (output,) = config.additional_model_outputs
    assert output.args == (HIDDEN_OUTPUT,) and output.gather_context is True
    assert config.batching_type == "inflight" and config.max_batch_size == 16 and config.max_beam_width == 1
    assert config.enable_chunked_context is True
    assert config.kv_cache_config.enable_block_reuse is True
    assert config.kv_cache_config.free_gpu_memory_fraction == 0.58
    assert config.scheduler_config.args == ("gne",)
    assert config.parallel_config.args == ("mpi", "leader") and config.parallel_config.device_ids == [0]
    with pytest.raises(ValueError, match="batch_scheduler_policy 'fifo'"):
        ExecutorSettings("/e", 16, 0.5, True, "fifo", [0])


def test_every_request_asks_for_the_hidden_states_again_and_sends_the_whole_context(
    tle: FakeExecutorBindings,
) -> None:
    context = EngineContext(VOCAB, WIDTH, max_length=64, max_rows=16)
    context.append([1, 2], np.ones((3, WIDTH), np.float32), [5], salted=True)
    inp = context.engine_input()
    request = build_request(
        tle,
        inp,
        job(MAX_NEW_TOKENS=[[0]], TEMPERATURE=[[0.8]], TOP_K=[[20]], TOP_P=[[0.9]], RANDOM_SEED=[[7]]),
        end_id=99,
        pad_id=98,
        table="TABLE",
    )
    assert request.args == ([1, 2, 100, 101, 102, 5], 1), "speech rows as vocab+row ids; max_tokens >= 1"
    assert request.streaming is True and request.end_id == 99 and request.pad_id == 98
    assert request.output_config.exclude_input_from_output is True
    (output,) = request.output_config.additional_model_outputs
    assert output.args == (HIDDEN_OUTPUT,) and output.gather_context is True
    sampling = request.sampling_config
    assert sampling.args == (1,) and sampling.top_k == 20 and sampling.top_p == pytest.approx(0.9)
    assert sampling.seed == 7 and sampling.temperature == pytest.approx(0.8)
    tuning = request.prompt_tuning_config
    assert tuning.args[0] == "TABLE" and tuning.args[1] == [int(e) for e in inp.extra_ids] and len(tuning.args[1]) == 6
    greedy = build_request(tle, inp, job(MAX_NEW_TOKENS=[[5]]), end_id=99, pad_id=98, table="TABLE")
    assert greedy.args[1] == 5 and greedy.sampling_config.top_k == 1 and greedy.sampling_config.temperature is None


def test_appended_positions_never_share_extra_ids_with_another_request() -> None:
    """The KV-reuse rule: a fork appending the same audio gets its own ids; the shared prefix keeps its ids."""
    audio = np.arange(2 * WIDTH, dtype=np.float32).reshape(2, WIDTH)
    parent = EngineContext(VOCAB, WIDTH, max_length=64, max_rows=16)
    parent.append([1, 2, 3], None, [], salted=True)
    fork = parent.fork()
    parent.append([], audio, [4], salted=True)
    fork.append([], audio, [4], salted=True)
    a, b = parent.engine_input(), fork.engine_input()
    assert a.input_ids.tolist() == b.input_ids.tolist()
    assert a.extra_ids[:3].tolist() == b.extra_ids[:3].tolist(), "the prefix stays reusable"
    assert not set(a.extra_ids[3:].tolist()) & set(b.extra_ids[3:].tolist())
    assert all(e > 0 for e in a.extra_ids.tolist())


@dataclass
class FakeResult:
    """A streamed ``Result`` as the 0.20 bindings expose it (``output_token_ids`` per beam, named outputs)."""

    output_token_ids: list[list[int]]
    additional_outputs: list[Any]
    is_final: bool = False


def named(name: str, rows: np.ndarray) -> Any:
    return types.SimpleNamespace(name=name, output=rows)


def test_results_map_to_our_responses_with_the_state_each_token_was_sampled_from() -> None:
    context = EngineContext(VOCAB, WIDTH, max_length=64, max_rows=16)
    context.append([1, 2], None, [], salted=True)
    appended = context.append([3, 4, 5], None, [], salted=True)
    rng = np.random.default_rng(0)
    computed = rng.standard_normal((3, WIDTH)).astype(np.float32)  # the prefix [1, 2] was reused: 3 rows only
    step1 = rng.standard_normal((1, WIDTH)).astype(np.float32)
    results = [
        FakeResult([[7]], [named(CONTEXT_OUTPUT, computed), named(GENERATION_OUTPUT, np.zeros((0, WIDTH)))]),
        FakeResult([[8]], [named(GENERATION_OUTPUT, step1)], is_final=True),
    ]
    steps = (engine_step(r, width=WIDTH, first=i == 0, appended=appended) for i, r in enumerate(results))
    out = list(
        backbone_responses(
            steps,
            context=context,
            appended=appended,
            max_new_tokens=5,
            stop_ids=frozenset({99}),
            embed=lambda t: np.full(WIDTH, t, np.float32),
        )
    )
    np.testing.assert_array_equal(out[0]["HIDDEN"][0], computed)  # the appended positions' states
    assert out[1]["TOKEN_IDS"].tolist() == [[7]]
    np.testing.assert_array_equal(out[1]["HIDDEN"][0], computed[-1:])  # token 7 was sampled from the last row
    assert out[2]["TOKEN_IDS"].tolist() == [[8]]
    np.testing.assert_array_equal(out[2]["HIDDEN"][0], step1)  # token 8 from token 7's position
    assert context.ids[-2:] == [7, 8] and out[2]["CONTEXT_LENGTH"].tolist() == [[7]]


def test_missing_outputs_and_rows_skipped_by_kv_reuse_are_named() -> None:
    no_output = FakeResult([[7]], [])
    with pytest.raises(EngineContractError, match=r"no context_hidden_states .*hidden_states\.py.*ExecutorConfig"):
        engine_step(no_output, width=WIDTH, first=True, appended=2)
    reused = FakeResult([[7]], [named(CONTEXT_OUTPUT, np.zeros((1, WIDTH), np.float32))])
    with pytest.raises(EngineContractError, match="1 rows for 3 appended positions: KV-cache reuse"):
        engine_step(reused, width=WIDTH, first=True, appended=3)
    with pytest.raises(EngineContractError, match="no generation_hidden_states"):
        engine_step(FakeResult([[8]], []), width=WIDTH, first=False, appended=3)
