"""Import MinMo's own weights: input projector, output projector and duplex predictor.

MinMo publishes no weights, so this module defines the contract a MinMo weights provider meets.
The folder holds safetensors files whose keys are ours without the stage prefix::

    minmo/
      input_projector.safetensors   conv.weight [llm, encoder_width, stride], conv.bias [llm],
                                    blocks.N.self_attn.linear_{q,k,v,out}.{weight,bias},
                                    blocks.N.feed_forward.w_{1,2}.{weight,bias}, blocks.N.norm{1,2}.{weight,bias}
      output_projector.safetensors  weight [speech_lm_width, 2 * llm], bias [speech_lm_width]
      duplex.safetensors            input_proj, speaking_embed, layer.*, norm, classifier (DuplexPredictor)
      config.json                   optional: {"input_projector": {"projector_layers", "projector_heads",
                                    "projector_ffn", "projector_stride"}, "duplex": {DuplexConfig fields}}

It runs after the backbone, encoder and speech_lm imports: the widths are checked against those
stages (``llm`` = the backbone's hidden size), the projectors are merged into the encoder and
speech_lm folders, which then load strictly, and ``duplex/`` is written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from services import duplex, encoder, speech_lm
from services.duplex import DuplexConfig, DuplexPredictor
from services.encoder import EncoderConfig, SpeechEncoder
from services.importers.errors import CheckpointError, check_keys
from services.importers.output import read_meta, read_tensors, write_stage
from services.importers.qwen2 import read_json
from services.importers.torch_files import shapes
from services.speech_lm import SpeechLM, SpeechLMConfig

INPUT_PROJECTOR = "input_projector.safetensors"
OUTPUT_PROJECTOR = "output_projector.safetensors"
DUPLEX = "duplex.safetensors"
_PROJECTOR_FIELDS = ("projector_layers", "projector_heads", "projector_ffn", "projector_stride")


def _load(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (see `minmo models import --help` for the MinMo folder layout)")
    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise CheckpointError(f"{path} is not a safetensors file: {exc}") from None


def _expected(module: torch.nn.Module, prefix: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if k.startswith(prefix)}


def _options(source: Path) -> dict[str, Any]:
    path = source / "config.json"
    return read_json(path) if path.is_file() else {}


def import_minmo(source: Path, out: Path) -> list[str]:
    """Merge the projectors into ``out/encoder`` and ``out/speech_lm``; write ``out/duplex``."""

    def imported(stage: str, kind: str) -> dict[str, Any]:
        hint = f"minmo models import {kind} <dir> --out {out}"
        return read_meta(out / stage, stage=stage, needed_by="the minmo import", import_hint=hint)

    backbone_meta = imported("backbone", "qwen2")
    enc_meta = imported(encoder.STAGE, "sensevoice")
    lm_meta = imported(speech_lm.STAGE, "cosyvoice2")
    llm = int(backbone_meta["config"]["hidden_size"])
    options = _options(source)
    preset = EncoderConfig.preset("minmo")
    projector = {k: getattr(preset, k) for k in _PROJECTOR_FIELDS}
    projector.update({k: v for k, v in dict(options.get("input_projector", {})).items() if k in _PROJECTOR_FIELDS})
    unknown = sorted(set(options.get("input_projector", {})) - set(_PROJECTOR_FIELDS))
    if unknown:
        raise CheckpointError(f"{source / 'config.json'}: unknown input_projector fields {', '.join(unknown)}")
    try:
        enc_config = dataclasses.replace(EncoderConfig.from_dict(enc_meta["config"]), llm_dim=llm, **projector)
        lm_config = dataclasses.replace(SpeechLMConfig.from_dict(lm_meta["config"]), llm_hidden_size=llm)
        duplex_fields = {**DuplexConfig.preset("minmo").to_dict(), **dict(options.get("duplex", {})), "llm_dim": llm}
        duplex_config = DuplexConfig.from_dict(duplex_fields)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source / 'config.json'}: {exc}") from None

    with torch.device("meta"):
        enc_expected = _expected(SpeechEncoder(enc_config), "projector.")
        lm_expected = _expected(SpeechLM(lm_config), "output_projector.")
        duplex_expected = _expected(DuplexPredictor(duplex_config), "")
    inp = {f"projector.{k}": v for k, v in _load(source / INPUT_PROJECTOR).items()}
    outp = {f"output_projector.{k}": v for k, v in _load(source / OUTPUT_PROJECTOR).items()}
    dup = _load(source / DUPLEX)
    check_keys(enc_expected, shapes(inp), source=f"{source / INPUT_PROJECTOR} (keys prefixed projector.)")
    check_keys(lm_expected, shapes(outp), source=f"{source / OUTPUT_PROJECTOR} (keys prefixed output_projector.)")
    check_keys(duplex_expected, shapes(dup), source=str(source / DUPLEX))

    sources = {"minmo": str(source.resolve())}
    for stage, config, meta, extra in (
        (encoder.STAGE, enc_config, enc_meta, inp),
        (speech_lm.STAGE, lm_config, lm_meta, outp),
    ):
        directory = out / stage
        body = {k: v for k, v in read_tensors(directory).items() if k not in extra}
        write_stage(directory, {**body, **extra}, config, stage=stage, sources={**meta.get("sources", {}), **sources})
    write_stage(out / duplex.STAGE, dup, duplex_config, stage=duplex.STAGE, sources=sources)
    return [
        f"encoder: input projector ({len(inp)} tensors) merged -> {out / encoder.STAGE}",
        f"speech_lm: output projector [{lm_config.width}, {2 * llm}] merged -> {out / speech_lm.STAGE}",
        f"duplex: {len(dup)} tensors, llm_dim {llm} -> {out / duplex.STAGE} "
        "(feature fingerprint not recorded: the provider vouches it was trained on these encoder/backbone weights)",
    ]
