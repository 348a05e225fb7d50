"""One contract per model, used by both sides: what the orchestrator sends and reads is what each model's
``config.pbtxt`` declares, what it builds the adapter parses back unchanged, and no tensor name is written
anywhere else.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import np_to_triton_dtype

from minmo_contracts import CONTRACTS, MODELS, backbone, controls, duplex, encoder, speech_lm, vocoder
from minmo_contracts.spec import Tensors, TensorSpec
from minmo_contracts.validation import InvalidInputError

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULES: dict[str, ModuleType] = {m.NAME: m for m in (encoder, backbone, duplex, speech_lm, vocoder)}
RNG = np.random.default_rng(0)

# Every request builder of every contract, called with every option it has: what the orchestrator can send.
REQUESTS: dict[str, dict[str, Callable[[], Tensors]]] = {
    "encoder": {
        "request": lambda: encoder.request(RNG.uniform(-1, 1, 640).astype(np.float32)),
        "end_request": encoder.end_request,
    },
    "backbone": {
        "append_request": lambda: backbone.append_request(
            [1, 2], RNG.standard_normal((3, 8)), [4], truncate_to=5, fork_from=(1 << 63) - 1
        ),
        "generate_request": lambda: backbone.generate_request(
            [7], max_new_tokens=9, temperature=0.7, top_k=5, top_p=0.9, seed=(1 << 63) - 1
        ),
        "end_request": backbone.end_request,
    },
    "duplex": {
        "request": lambda: duplex.request(RNG.standard_normal((2, 8)), speaking=True),
        "end_request": duplex.end_request,
    },
    "speech_lm": {
        "request": lambda: speech_lm.request(
            RNG.standard_normal((5, 16)),
            query=RNG.standard_normal(16),
            max_tokens=15,
            until_eos=True,
            temperature=0.5,
            top_k=3,
            seed=11,
        ),
        "end_request": speech_lm.end_request,
    },
    "vocoder": {
        "request": lambda: vocoder.request([1, 6560], speaker=RNG.standard_normal(192)),
        "end_request": vocoder.end_request,
    },
}
STOP_REQUEST = controls.stop_request

# One response of each model, as its adapter builds it: what the orchestrator can read.
RESPONSES: dict[str, Callable[[], object]] = {
    "encoder": lambda: encoder.EncoderOutput(np.ones((2, 8), np.float32), frame_offset=4, samples_needed=3840),
    "backbone": lambda: backbone.BackboneOutput(
        np.array([7], np.int32), np.ones((1, 8), np.float32), np.ones((1, 8), np.float32), context_length=12
    ),
    "duplex": lambda: duplex.DuplexOutput(np.full((2, 3), 1 / 3, np.float32)),
    "speech_lm": lambda: speech_lm.SpeechLMOutput(np.array([42], np.int32), end_of_speech=False),
    "vocoder": lambda: vocoder.VocoderOutput(np.zeros(960, np.float32), sample_offset=1920),
}


def config(model: str) -> mc.ModelConfig:
    return text_format.Parse((REPO_ROOT / "model_repository" / model / "config.pbtxt").read_text(), mc.ModelConfig())


def declared(tensors: list[mc.ModelInput] | list[mc.ModelOutput]) -> dict[str, tuple[str, int]]:
    """name -> (wire dtype, rank) as Triton reads them from the config (batch dimension excluded)."""
    return {t.name: (mc.DataType.Name(t.data_type).removeprefix("TYPE_"), len(t.dims)) for t in tensors}


def as_sent(tensors: Tensors) -> dict[str, tuple[str, int]]:
    """name -> (wire dtype, rank) as the orchestrator's client puts them on the wire (tritonclient's mapping)."""
    return {name: (np_to_triton_dtype(array.dtype), array.ndim) for name, array in tensors.items()}


def getter(tensors: Tensors) -> Callable[[str], np.ndarray | None]:
    """What an adapter's ``input_getter`` returns for these tensors: the batch dimension of 1 added."""
    batched = {name: np.ascontiguousarray(array)[None] for name, array in tensors.items()}
    return batched.get


def test_every_builder_is_exercised_here() -> None:
    """A new builder must be added to REQUESTS, or the checks below would not see what it sends."""
    for model, module in MODULES.items():
        builders = {name for name, f in inspect.getmembers(module, inspect.isfunction) if name.endswith("request")}
        assert builders == set(REQUESTS[model]), f"minmo_contracts.{model}: update REQUESTS in this test"


@pytest.mark.parametrize("model", MODELS)
def test_every_tensor_the_orchestrator_sends_is_declared_with_its_dtype_and_rank(model: str) -> None:
    inputs = declared(list(config(model).input))
    for name, build in REQUESTS[model].items():
        for tensor, (dtype, rank) in as_sent(build()).items():
            assert tensor in inputs, f"{model}.{name} sends {tensor}, which model_repository/{model} does not declare"
            assert (dtype, rank) == inputs[tensor], f"{model}.{name}: {tensor} is sent as {dtype} rank {rank}"
    if config(model).model_transaction_policy.decoupled:
        ((tensor, (dtype, rank)),) = as_sent(STOP_REQUEST()).items()
        assert inputs[tensor] == (dtype, rank)


@pytest.mark.parametrize("model", MODELS)
def test_every_tensor_the_orchestrator_reads_is_declared_with_its_dtype_and_rank(model: str) -> None:
    """The adapter sends every declared output with its dtype and rank; the readers read those same specs."""
    sent = RESPONSES[model]().tensors()  # type: ignore[attr-defined]
    assert as_sent(sent) == declared(list(config(model).output))


@pytest.mark.parametrize("model", MODELS)
def test_the_config_declares_nothing_the_contract_lacks(model: str) -> None:
    cfg, contract = config(model), CONTRACTS[model]
    assert [t.name for t in cfg.input] == [t.name for t in contract.inputs]
    assert [t.name for t in cfg.output] == [t.name for t in contract.outputs]
    for ours, theirs in ((contract.inputs, cfg.input), (contract.outputs, cfg.output)):
        for spec, tensor in zip(ours, theirs, strict=True):
            assert mc.DataType.Name(tensor.data_type) == spec.triton_type, spec.name
            assert tuple(tensor.dims) == spec.dims, spec.name
    for spec, tensor in zip(contract.inputs, cfg.input, strict=True):
        assert (tensor.optional, tensor.allow_ragged_batch) == (spec.optional, spec.ragged), spec.name
    assert cfg.model_transaction_policy.decoupled == contract.decoupled
    assert [c.name for c in cfg.sequence_batching.control_input] == [controls.SEQUENCE_START, controls.SEQUENCE_END]


# ---- the request the orchestrator builds is the request the adapter parses -----------------------------------


def test_encoder_request_round_trip() -> None:
    audio = RNG.uniform(-1, 1, 320).astype(np.float32)
    np.testing.assert_array_equal(encoder.EncoderRequest.parse(getter(encoder.request(audio)), end=False).audio, audio)
    assert encoder.EncoderRequest.parse(getter(encoder.end_request()), end=True).audio.shape == (0,)


def test_backbone_request_round_trip() -> None:
    speech = RNG.standard_normal((3, 8)).astype(np.float32)
    parse = {"vocab_size": 10, "width": 8, "max_new_tokens_limit": 64}
    appended = backbone.BackboneRequest.parse(
        getter(backbone.append_request([1, 2], speech, [4], truncate_to=5, fork_from=(1 << 63) - 1)), **parse
    )
    assert (appended.input_ids, appended.suffix_ids, appended.truncate_to, appended.fork_from) == (
        [1, 2],
        [4],
        5,
        (1 << 63) - 1,
    )
    assert appended.speech is not None
    np.testing.assert_array_equal(appended.speech, speech)
    assert appended.max_new_tokens == 0
    generated = backbone.BackboneRequest.parse(
        getter(backbone.generate_request([7], max_new_tokens=9, temperature=0.5, top_k=5, top_p=0.9, seed=3)), **parse
    )
    assert (generated.input_ids, generated.max_new_tokens, generated.truncate_to) == ([7], 9, -1)
    sampling = generated.sampling
    assert (sampling.temperature, sampling.top_k, sampling.top_p, sampling.seed) == (0.5, 5, pytest.approx(0.9), 3)
    ended = backbone.BackboneRequest.parse(getter(backbone.end_request()), **parse)
    assert (ended.input_ids, ended.speech, ended.max_new_tokens, ended.sampling.seed) == ([], None, 0, None)


def test_duplex_request_round_trip() -> None:
    hidden = RNG.standard_normal((2, 8)).astype(np.float32)
    parsed = duplex.DuplexRequest.parse(getter(duplex.request(hidden, speaking=True)), width=8, end=False)
    np.testing.assert_array_equal(parsed.hidden, hidden)
    assert parsed.speaking.tolist() == [True, True]
    assert duplex.DuplexRequest.parse(getter(duplex.end_request()), width=8, end=True).hidden.shape == (0, 8)


def test_speech_lm_request_round_trip() -> None:
    semantic, query = RNG.standard_normal((5, 16)).astype(np.float32), RNG.standard_normal(16).astype(np.float32)
    request = speech_lm.request(semantic, query=query, max_tokens=75, until_eos=True, temperature=0.5, seed=11)
    parsed = speech_lm.SpeechLMRequest.parse(getter(request), width=16, default_tokens=15, max_tokens_limit=100)
    assert parsed.query is not None and parsed.semantic is not None
    np.testing.assert_array_equal(parsed.query, query)
    np.testing.assert_array_equal(parsed.semantic, semantic)
    assert (parsed.max_tokens, parsed.until_eos, parsed.sampling.temperature, parsed.sampling.seed) == (
        75,
        True,
        0.5,
        11,
    )
    default = speech_lm.SpeechLMRequest.parse(
        getter(speech_lm.request(semantic)), width=16, default_tokens=15, max_tokens_limit=100
    )
    assert (default.max_tokens, default.until_eos, default.sampling.seed) == (15, False, None)
    ended = speech_lm.SpeechLMRequest.parse(
        getter(speech_lm.end_request()), width=16, default_tokens=15, max_tokens_limit=100
    )
    assert (ended.max_tokens, ended.query, ended.semantic) == (0, None, None)


def test_vocoder_request_round_trip() -> None:
    speaker = RNG.standard_normal(192).astype(np.float32)
    parsed = vocoder.VocoderRequest.parse(
        getter(vocoder.request([0, 6560], speaker=speaker)), token_count=6561, speaker_dim=192, end=False
    )
    assert parsed.tokens.tolist() == [0, 6560] and parsed.speaker is not None
    np.testing.assert_array_equal(parsed.speaker, speaker)
    ended = vocoder.VocoderRequest.parse(getter(vocoder.end_request()), token_count=6561, speaker_dim=192, end=True)
    assert ended.tokens.shape == (0,) and ended.speaker is None


def test_bad_requests_keep_their_messages() -> None:
    """The adapters' answers to a malformed request (INVALID_ARG) name the tensor and what to send."""
    with pytest.raises(InvalidInputError, match=r"input AUDIO must be float32 PCM in \[-1, 1\], got a peak of 2.0"):
        encoder.EncoderRequest.parse(getter(encoder.request(np.array([2.0], np.float32))), end=False)
    with pytest.raises(InvalidInputError, match=r"input INPUT_IDS holds ids outside \[0, 10\)"):
        backbone.BackboneRequest.parse(
            getter(backbone.append_request([10])), vocab_size=10, width=8, max_new_tokens_limit=8
        )
    with pytest.raises(InvalidInputError, match="input TOKENS is required"):
        vocoder.VocoderRequest.parse(getter(STOP_REQUEST()), token_count=6561, speaker_dim=192, end=False)


# ---- what the adapter sends is what the orchestrator reads -----------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_response_round_trip(model: str) -> None:
    sent = RESPONSES[model]()
    read = type(sent).read(sent.tensors())  # type: ignore[attr-defined]
    for field in sent.__dataclass_fields__:  # type: ignore[attr-defined]
        ours, theirs = getattr(sent, field), getattr(read, field)
        if isinstance(ours, np.ndarray):
            np.testing.assert_array_equal(theirs, ours)
        else:
            assert theirs == ours, field


def test_readers_say_what_the_orchestrator_relies_on() -> None:
    prefill = backbone.BackboneOutput.read(
        backbone.BackboneOutput(np.zeros(0, np.int32), np.ones((3, 8)), np.zeros((0, 8)), 5).tensors()
    )
    assert prefill.token_id is None and prefill.context_length == 5
    token = backbone.BackboneOutput.read(RESPONSES["backbone"]().tensors())  # type: ignore[attr-defined]
    assert token.token_id == 7
    # An encoder that does not say what it needs next: every push is sent (samples_needed 0).
    assert encoder.EncoderOutput.read({encoder.EMBEDDINGS.name: np.zeros((0, 8), np.float32)}).samples_needed == 0


def test_a_builder_refuses_the_wrong_rank_naming_the_tensor() -> None:
    with pytest.raises(ValueError, match=r"tensor SPEECH_EMBEDDINGS has 2 dimension\(s\), got shape \[8\]"):
        backbone.append_request(speech=np.ones(8))
    with pytest.raises(ValueError, match="tensor HIDDEN has 2 dimension"):
        duplex.request(np.ones(8), speaking=False)


# ---- one definition: numpy only, and no tensor name written anywhere else --------------------------------------


def test_the_contracts_import_without_torch_triton_or_the_servers() -> None:
    """The orchestrator is to run without torch: the contracts must not need it (nor Triton's stub module)."""
    blocked = ["torch", "triton_python_backend_utils", "tritonclient", "grpc", "orchestrator", "services"]
    code = f"""
import importlib.abc, pkgutil, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked in this test")
sys.meta_path.insert(0, Block())
import minmo_contracts
for info in pkgutil.iter_modules(minmo_contracts.__path__):
    importlib.import_module(f"minmo_contracts.{{info.name}}")
print(sorted(m for m in sys.modules if m.split(".")[0] == "minmo_contracts"))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "minmo_contracts.vocoder" in done.stdout


TENSOR_NAMES = {t.name for c in CONTRACTS.values() for t in (*c.inputs, *c.outputs)}
CONTROL_NAMES = {controls.SEQUENCE_START, controls.SEQUENCE_END}


def test_no_tensor_name_is_written_outside_the_contracts() -> None:
    """A renamed tensor fails in one place: code outside ``minmo_contracts`` uses the specs, never the strings."""
    found = []
    for root in ("orchestrator", "perf", "services", "model_repository"):
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and node.value in TENSOR_NAMES | CONTROL_NAMES:
                    found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "use the TensorSpec of minmo_contracts.<model> instead:\n" + "\n".join(found)


def test_spec_dtype_is_the_one_the_config_names() -> None:
    spec = TensorSpec("X", np.uint64, (1,))
    assert spec.triton_type == "TYPE_UINT64" and spec.scalar(3).dtype == np.uint64
    with pytest.raises(ValueError, match="dtype float16 has no Triton type here"):
        TensorSpec("Y", np.float16, (1,))
