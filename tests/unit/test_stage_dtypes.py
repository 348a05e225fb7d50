"""Every PyTorch stage served in bf16 and fp16 (issue 16): batched == one at a time, streams included.

The fp32 batching tests (``test_*_batch.py``) hold at 1e-5. In a 16-bit dtype every op rounds its
output to 8 (bf16) or 11 (fp16) mantissa bits, so the bar is counted in units in the last place
(ulp = the dtype's eps) of the output's scale (its largest magnitude in the fp32 run):

- batched vs one at a time: a batched pass rounds in the same places as one stream alone, but a
  matmul with another row count may add its fp32 partial sums in another order (another kernel
  blocking), so a product can land on the other side of a rounding boundary: one ulp there, carried
  through the following layers. Measured on this machine: no difference at all for the encoder, the
  duplex predictor, the backbone and the speech LM (equal work shapes), ~3 ulps of the mel's scale
  for the vocoder's flow (its windows are padded to the batch's longest, so every matmul's shape
  changes). Bars: 2 ulps (the former four), 12 ulps (the flow), leaving room for other CPUs' kernels.
- HiFT stays float32 (``Token2Wav.FLOAT32_PARTS``), but its voiced/unvoiced decision is a threshold
  on the predicted F0: a mel a few ulps off can flip a frame and change its samples by the whole
  source amplitude. Audio is therefore compared as a signal-to-difference ratio: measured 37 dB
  (bf16) and 55 dB (fp16) batched vs alone; bars 25 and 40 dB.
- against fp32 (the quantisation itself): measured 5.5 (encoder), 2.5 (backbone) and 4 (flow mel)
  ulps of bf16 at the output's scale; bar 16 ulps. Greedy tokens of a 16-bit LM may leave the fp32
  path once a near tie flips, so tokens are compared batched vs alone, never against fp32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from services import backbone, duplex, encoder, speech_lm, vocoder
from services.common.precision import cast_for_serving, compute_dtype, dtype_name, parse_dtype
from services.smoke_seeds import BACKBONE_SEED, DUPLEX_SEED, ENCODER_SEED, SPEECH_LM_SEED
from services.triton.params import ModelParameters, ParameterError
from services.triton.precision import model_dtype, serve
from tests.unit import test_duplex_batch as duplex_cases
from tests.unit import test_encoder_batch as encoder_cases
from tests.unit import test_vocoder_batch as vocoder_cases

HALF = [torch.bfloat16, torch.float16]
IDS = ["bf16", "fp16"]


@dataclass(frozen=True)
class Bar:
    """Tolerances of one stage in ulps of the output's scale (see the module docstring)."""

    batched_ulps: float
    fp32_ulps: float = 16.0


def ulp(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


def max_diff(got: list[list[torch.Tensor]], want: list[list[torch.Tensor]]) -> float:
    diffs = [
        float((a.float() - b.float()).abs().max())
        for stream_got, stream_want in zip(got, want, strict=True)
        for a, b in zip(stream_got, stream_want, strict=True)
        if a.numel()
    ]
    return max(diffs, default=0.0)


def scale(outs: list[list[torch.Tensor]]) -> float:
    return max(float(t.float().abs().max()) for stream in outs for t in stream if t.numel())


def shapes(outs: list[list[torch.Tensor]]) -> list[list[tuple[int, ...]]]:
    return [[tuple(t.shape) for t in stream] for stream in outs]


# --- the dtype helpers and the adapters' parameter ------------------------------------------------


def params(**values: str) -> ModelParameters:
    config = {"name": "encoder", "parameters": {k: {"string_value": v} for k, v in values.items()}}
    return ModelParameters.from_args({"model_config": json.dumps(config)})


def test_the_dtype_parameter_defaults_to_float32_and_names_the_choices() -> None:
    assert model_dtype(params()) == torch.float32
    assert model_dtype(params(dtype="${stage_dtype}")) == torch.float32  # an unfilled template is unset
    assert model_dtype(params(dtype="bfloat16")) == torch.bfloat16
    assert model_dtype(params(dtype="float16")) == torch.float16
    with pytest.raises(ParameterError, match=r"'dtype'='bf16' is not served; expected one of float32, bfloat16"):
        model_dtype(params(dtype="bf16"))
    with pytest.raises(ValueError, match="expected one of"):
        parse_dtype("int8")
    assert dtype_name(torch.bfloat16) == "bfloat16"


def test_serving_casts_everything_but_the_float32_parts() -> None:
    enc = serve(encoder.build_smoke(ENCODER_SEED), params(dtype="bfloat16"), torch.device("cpu"))
    assert enc.frontend.add_shift.dtype == enc.frontend.rescale.dtype == torch.float32
    assert {p.dtype for p in enc.parameters()} == {torch.bfloat16}
    assert compute_dtype(enc) == enc.dtype == torch.bfloat16

    voc = cast_for_serving(vocoder.build_smoke(0), torch.float16)
    assert {p.dtype for p in voc.hift.parameters()} == {torch.float32}
    assert voc.default_speaker.dtype == torch.float32
    assert {p.dtype for p in voc.flow.parameters()} == {torch.float16}
    assert compute_dtype(voc) == torch.float16


# --- encoder ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder_fp32() -> encoder.SpeechEncoder:
    return encoder.build_smoke(ENCODER_SEED)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_encoder_streams_batched_equal_one_at_a_time(dtype: torch.dtype, encoder_fp32: encoder.SpeechEncoder) -> None:
    model = cast_for_serving(encoder.build_smoke(ENCODER_SEED), dtype)
    pcms = encoder_cases.voices(5)
    batched, _ = encoder_cases.run(model, pcms, encoder_cases.MIXED, batched=True)
    single, _ = encoder_cases.run(model, pcms, encoder_cases.MIXED, batched=False)
    reference, _ = encoder_cases.run(encoder_fp32, pcms, encoder_cases.MIXED, batched=True)
    assert shapes(batched) == shapes(single) == shapes(reference)
    assert {t.dtype for stream in batched for t in stream} == {dtype}
    bar, unit = Bar(batched_ulps=2), ulp(dtype) * scale(reference)
    assert max_diff(batched, single) <= bar.batched_ulps * unit
    assert max_diff(batched, reference) <= bar.fp32_ulps * ulp(torch.bfloat16) * scale(reference)
    stream = model.new_stream()
    stream.push(pcms[0][:8000])
    assert stream.state.sanm.dtype == stream.state.projector.dtype == dtype  # the caches are served 16-bit


# --- duplex ----------------------------------------------------------------------------------------


def duplex_model(dtype: torch.dtype) -> duplex.DuplexPredictor:
    model = duplex.build_smoke(DUPLEX_SEED)
    with torch.no_grad():
        model.layer.self_attn.relative_bias.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    return cast_for_serving(model, dtype)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_duplex_streams_batched_equal_one_at_a_time(dtype: torch.dtype) -> None:
    model, reference_model = duplex_model(dtype), duplex_model(torch.float32)
    data = duplex_cases.inputs(5)
    batched = duplex_cases.run(model, data, duplex_cases.MIXED, batched=True)
    single = duplex_cases.run(model, data, duplex_cases.MIXED, batched=False)
    reference = duplex_cases.run(reference_model, data, duplex_cases.MIXED, batched=True)
    assert {t.dtype for stream in batched for t in stream} == {torch.float32}, "PROBS are float32 in any dtype"
    # Probabilities lie in [0, 1]: the scale is 1.
    assert max_diff(batched, single) <= 2 * ulp(dtype)
    assert max_diff(batched, reference) <= 16 * ulp(torch.bfloat16)
    assert model.new_stream().cache.dtype == dtype


# --- vocoder ---------------------------------------------------------------------------------------


def flow_mels(model: vocoder.Token2Wav, *, together: bool) -> list[list[torch.Tensor]]:
    """The flow's mel of every push of ``vocoder_cases.PLANS``, pushed as batches or stream by stream."""
    plans = vocoder_cases.PLANS
    streams = [model.new_stream(vocoder_cases.speaker(plan[3])) for plan in plans]
    todo = [vocoder_cases.pushes(plan, seed) for seed, plan in enumerate(plans)]
    outs: list[list[torch.Tensor]] = [[] for _ in plans]
    for r in range(max(plan[0] + len(plan[2]) for plan in plans)):
        members = [i for i, plan in enumerate(plans) if 0 <= r - plan[0] < len(todo[i])]
        groups = [members] if together else [[i] for i in members]
        for group in groups:
            pushed = [todo[i][r - plans[i][0]] for i in group]
            flow = model.flow.advance_batch(
                [streams[i]._flow for i in group],
                [torch.as_tensor(ids) for ids, _ in pushed],
                torch.cat([streams[i]._speaker for i in group]),
                [final for _, final in pushed],
            )
            flow.commit()
            for i, mel in zip(group, flow.mels, strict=True):
                outs[i].append(mel.detach())
    return outs


def snr_db(got: list[list[np.ndarray]], want: list[list[np.ndarray]]) -> float:
    a = np.concatenate([x for stream in got for x in stream])
    b = np.concatenate([x for stream in want for x in stream])
    return float(10 * np.log10(np.sum(b**2) / max(float(np.sum((a - b) ** 2)), 1e-30)))


@pytest.mark.parametrize(("dtype", "min_snr_db"), [(torch.bfloat16, 25.0), (torch.float16, 40.0)], ids=IDS)
def test_vocoder_streams_batched_equal_one_at_a_time(dtype: torch.dtype, min_snr_db: float) -> None:
    model, reference_model = cast_for_serving(vocoder.build_smoke(0), dtype), vocoder.build_smoke(0)
    together, alone = flow_mels(model, together=True), flow_mels(model, together=False)
    reference = flow_mels(reference_model, together=True)
    assert shapes(together) == shapes(alone) == shapes(reference)
    assert {t.dtype for stream in together for t in stream} == {torch.float32}, "the mel HiFT reads is float32"
    unit = ulp(dtype) * scale(reference)
    assert max_diff(together, alone) <= 12 * unit
    assert max_diff(together, reference) <= 16 * ulp(torch.bfloat16) * scale(reference)

    audio_together, streams = vocoder_cases.batched(model, vocoder_cases.PLANS)
    audio_alone = vocoder_cases.alone(model, vocoder_cases.PLANS)
    assert [[len(a) for a in s] for s in audio_together] == [[len(a) for a in s] for s in audio_alone]
    assert all(a.dtype == np.float32 for stream in audio_together for a in stream)
    assert snr_db(audio_together, audio_alone) >= min_snr_db
    memory = streams[0]._flow.step_memories[0]
    held = [t for slot in memory.slots.values() for t in (slot if isinstance(slot, tuple) else (slot,))]
    assert held and {t.dtype for t in held} == {dtype}, "the flow's caches are served 16-bit"


# --- backbone and speech LM ------------------------------------------------------------------------


def backbone_run(model: backbone.Backbone, *, together: bool, steps: int = 8) -> tuple[list, list[list[int]]]:
    """Ragged prompts (3-40 ids) prefilled, then greedy tokens; each pass batched or session by session."""
    prompts = [list(range(3, 3 + n)) for n in (3, 17, 40, 8)]
    sessions = [model.new_session() for _ in prompts]

    def run(work: list[backbone.BackboneStep]) -> list[backbone.StepOutput]:
        return model.run(work) if together else [model.run([w])[0] for w in work]

    hidden: list[list[torch.Tensor]] = [
        [out.hidden.clone()] for out in run([s.prepare_append(p) for s, p in zip(sessions, prompts, strict=True)])
    ]
    generations = [backbone.Generation(s, steps, temperature=0.0) for s in sessions]
    tokens: list[list[int]] = [[] for _ in prompts]
    for _ in range(steps):
        outs = run([g.prepare() for g in generations])
        for i, (generation, out) in enumerate(zip(generations, outs, strict=True)):
            token = generation.take(out)
            assert token is not None
            tokens[i].append(token.token_id)
            hidden[i].append(token.hidden[None].clone())
    return hidden, tokens


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_backbone_sessions_batched_equal_one_at_a_time(dtype: torch.dtype) -> None:
    model = cast_for_serving(backbone.build_smoke(BACKBONE_SEED), dtype)
    hidden, tokens = backbone_run(model, together=True)
    hidden_alone, tokens_alone = backbone_run(model, together=False)
    reference, _ = backbone_run(backbone.build_smoke(BACKBONE_SEED), together=True)
    assert tokens == tokens_alone
    assert {t.dtype for stream in hidden for t in stream} == {dtype}
    assert max_diff(hidden, hidden_alone) <= 2 * ulp(dtype) * scale(reference)
    # The prefill's states come from the same context in both dtypes (later tokens may differ after a near tie).
    prefill_error = max_diff([h[:1] for h in hidden], [h[:1] for h in reference])
    assert prefill_error <= 16 * ulp(torch.bfloat16) * scale(reference)
    assert model.new_session()._cache._kv.dtype == dtype


def speech_lm_run(model: speech_lm.SpeechLM, *, together: bool, tokens: int = 20) -> tuple[list, list[list[int]]]:
    """Four turns with 1-4 groups of semantic vectors; greedy tokens, each pass batched or turn by turn."""
    g = torch.Generator().manual_seed(0)
    width = 2 * model.config.llm_hidden_size
    streams = [model.new_stream(torch.randn(width, generator=g)) for _ in range(4)]
    for i, stream in enumerate(streams):
        stream.push_semantic(torch.randn(5 * (i + 1), width, generator=g))
    generations = [speech_lm.SpeechGeneration(s, tokens, temperature=0.0, top_k=0) for s in streams]
    logits: list[list[torch.Tensor]] = [[] for _ in streams]
    ids: list[list[int]] = [[] for _ in streams]
    for _ in range(tokens):
        ready = [(i, rows) for i, gen in enumerate(generations) if (rows := gen.prepare()) is not None]
        if not ready:
            break
        work = [(streams[i], rows) for i, rows in ready]
        outs = model.run(work) if together else [model.run([w])[0] for w in work]
        for (i, _), out in zip(ready, outs, strict=True):
            logits[i].append(out.detach().clone())
            token = generations[i].take(out)
            assert token is not None
            ids[i].append(token)
    return logits, ids


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_speech_lm_turns_batched_equal_one_at_a_time(dtype: torch.dtype) -> None:
    model = cast_for_serving(speech_lm.build_smoke(SPEECH_LM_SEED), dtype)
    logits, ids = speech_lm_run(model, together=True)
    logits_alone, ids_alone = speech_lm_run(model, together=False)
    reference, _ = speech_lm_run(speech_lm.build_smoke(SPEECH_LM_SEED), together=True)
    assert ids == ids_alone and sum(map(len, ids)) > 40
    assert max_diff(logits, logits_alone) <= 2 * ulp(dtype) * scale(reference)
    # The first token's logits come from the same context in both dtypes (later ones may follow other tokens).
    assert max_diff([lg[:1] for lg in logits], [lg[:1] for lg in reference]) <= 16 * ulp(torch.bfloat16) * scale(
        reference
    )
    stream = model.new_stream(torch.zeros(2 * model.config.llm_hidden_size))
    assert stream._cache._kv.dtype == dtype
