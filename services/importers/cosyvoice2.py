"""Import a CosyVoice 2 folder as the speech_lm and vocoder stages plus named voices.

Source layout (the ``CosyVoice2-0.5B`` release): ``cosyvoice2.yaml`` (HyperPyYAML), ``llm.pt``,
``flow.pt``, ``hift.pt`` (torch state dicts; ``hift.pt`` keys may carry the GAN recipe's
``generator.`` prefix), ``campplus.onnx``, ``speech_tokenizer_v2.onnx``, optionally ``spk2info.pt``
(the release has none: see :mod:`services.importers.voice_sources`) and
``CosyVoice-BlankEN/config.json`` (the Qwen2.5-0.5B config CosyVoice builds the LM body from). ``llm.pt`` is
``Qwen2LM``'s state dict: the body under ``llm.model.model.*`` (HF ``Qwen2ForCausalLM`` inside
``Qwen2Encoder``), ``llm_embedding``, ``speech_embedding``, ``llm_decoder``. Our
:class:`~services.speech_lm.SpeechLM` keeps the body as ``llm.*`` and drops the text
``embed_tokens`` / ``lm_head`` (MinMo feeds projected backbone states, never text ids).

The speech_lm stage also holds MinMo's output projector, which ``minmo models import minmo`` adds;
until then the folder is marked pending and its strict load names the missing projector keys.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch

from services import speech_lm, vocoder
from services.backbone import Qwen2Config
from services.importers.cosyvoice2_vocoder import expected_vocoder_shapes, vocoder_config, vocoder_tensors
from services.importers.errors import CheckpointError, check_keys
from services.importers.hyperyaml import load_hyperpyyaml, section
from services.importers.output import read_meta, write_stage
from services.importers.qwen2 import qwen2_config_from_hf, read_json
from services.importers.torch_files import load_state_dict, shapes
from services.importers.voice_sources import gather_voices
from services.importers.voices import CAMPPLUS_FILE, check_campplus, check_speech_tokenizer, save_voices
from services.speech_lm import SpeechLM, SpeechLMConfig

YAML_FILE = "cosyvoice2.yaml"
BODY_CONFIG = Path("CosyVoice-BlankEN") / "config.json"
_BODY_PREFIX = "llm.model.model."
# Text-side tensors of the CosyVoice LM that MinMo never uses (see the module docstring).
_DROPPED = ("llm.model.model.embed_tokens.weight", "llm.model.lm_head.weight")
PROJECTOR_PENDING = "output_projector: run `minmo models import minmo <dir> --out <weights>`"


def backbone_width(out: Path, default: int) -> int:
    """The LLM width the projectors must match: the imported backbone's, else the minmo preset's."""
    if (out / "backbone" / "config.json").is_file():
        return int(read_meta(out / "backbone", stage="backbone", needed_by="", import_hint="")["config"]["hidden_size"])
    return default


def speech_lm_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key in _DROPPED or key.endswith(".rotary_emb.inv_freq"):
            continue
        out["llm." + key[len(_BODY_PREFIX) :] if key.startswith(_BODY_PREFIX) else key] = tensor
    return out


def speech_lm_config(source: Path, doc: dict[str, object], llm_width: int) -> SpeechLMConfig:
    lm = section(doc, "llm", tag_suffix="Qwen2LM", source=str(source / YAML_FILE))  # type: ignore[arg-type]
    body: Qwen2Config = qwen2_config_from_hf(
        read_json(source / BODY_CONFIG), source=str(source / BODY_CONFIG), vocab=False
    )
    for key in ("llm_input_size", "llm_output_size"):
        if key in lm and int(lm[key]) != body.hidden_size:
            raise CheckpointError(f"{source / YAML_FILE}: llm.{key} {lm[key]} != body hidden_size {body.hidden_size}")
    base = SpeechLMConfig.preset("minmo")
    return dataclasses.replace(
        base,
        llm_hidden_size=llm_width,
        body=body,
        speech_token_size=int(lm.get("speech_token_size", base.speech_token_size)),
    )


def import_cosyvoice2(
    source: Path,
    out: Path,
    *,
    default_voice: str | None = None,
    voices_files: list[Path] | None = None,
    prompts: dict[str, Path] | None = None,
) -> list[str]:
    """Write ``out/speech_lm`` (pending the output projector) and ``out/vocoder`` with ``voices.safetensors``.

    Voices come from ``spk2info.pt`` (when the folder has one), ``voices_files`` and ``prompts``
    (name -> recording); at least one is needed (:func:`~services.importers.voice_sources.gather_voices`).
    """
    yaml_path = source / YAML_FILE
    doc = load_hyperpyyaml(yaml_path, overrides={"qwen_pretrain_path": str(source / BODY_CONFIG.parent)})
    lm_config = speech_lm_config(source, doc, backbone_width(out, SpeechLMConfig.preset("minmo").llm_hidden_size))
    voc_config = vocoder_config(doc, str(yaml_path))
    # Every check runs before anything is written.
    lm_state = speech_lm_tensors(load_state_dict(source / "llm.pt"))
    with torch.device("meta"):
        lm_expected = {k: tuple(v.shape) for k, v in SpeechLM(lm_config).state_dict().items()}
    lm_expected = {k: s for k, s in lm_expected.items() if not k.startswith("output_projector.")}
    check_keys(lm_expected, shapes(lm_state), source=f"{source / 'llm.pt'} (Qwen2LM; body llm.model.model.* -> llm.*)")

    voc_state = vocoder_tensors(load_state_dict(source / "flow.pt"), load_state_dict(source / "hift.pt"))
    check_campplus(source / CAMPPLUS_FILE)
    voices, voice_report = gather_voices(
        source, source / CAMPPLUS_FILE, voices_files=voices_files or [], prompts=prompts or {}
    )
    name = default_voice if default_voice is not None else sorted(voices)[0]
    if name not in voices:
        raise CheckpointError(
            f"--default-voice {name!r} is not among the imported voices; voices: {', '.join(sorted(voices))}"
        )
    voc_state["default_speaker"] = voices[name]
    check_keys(
        expected_vocoder_shapes(voc_config),
        shapes(voc_state),
        source=f"{source} flow.pt (flow.*) + hift.pt (hift.*, weight norm folded)",
    )
    check_speech_tokenizer(source / "speech_tokenizer_v2.onnx")

    sources = {"checkpoint": str(source.resolve())}
    write_stage(
        out / speech_lm.STAGE, lm_state, lm_config, stage=speech_lm.STAGE, sources=sources, pending=[PROJECTOR_PENDING]
    )
    target = out / vocoder.STAGE
    write_stage(target, {k: v.float() for k, v in voc_state.items()}, voc_config, stage=vocoder.STAGE, sources=sources)
    save_voices(target, voices)
    shutil.copy2(source / CAMPPLUS_FILE, target / CAMPPLUS_FILE)
    return [
        f"speech_lm: {len(lm_state)} tensors, body {lm_config.body.num_hidden_layers} layers x "
        f"{lm_config.width} -> {out / speech_lm.STAGE} (pending: MinMo output projector)",
        f"vocoder: {len(voc_state)} tensors (flow + HiFT), default voice {name!r} -> {target}",
        f"voices: {len(voices)} named speaker embeddings ({'; '.join(voice_report)}) -> "
        f"{target / 'voices.safetensors'}; campplus.onnx copied",
    ]
