"""Import a SenseVoice encoder checkpoint (FunASR layout) as the encoder stage.

Source layout: ``model.pt`` (state dict; the encoder under ``encoder.*``), ``config.yaml``
(``encoder_conf`` and ``frontend_conf``) and ``am.mvn`` (Kaldi-nnet CMVN: ``<AddShift>`` negated
means, ``<Rescale>`` inverse standard deviations over the 560 LFR dims). Key names follow FunASR's
``SenseVoiceEncoderSmall``: ``encoders0`` / ``encoders`` / ``tp_encoders`` SAN-M layers
(``self_attn.linear_q_k_v``, ``self_attn.linear_out``, ``self_attn.fsmn_block``,
``feed_forward.w_1`` / ``w_2``, ``norm1``, ``norm2``), ``after_norm``, ``tp_norm``; ours are the
same without the ``encoder.`` prefix, and ``am.mvn`` becomes ``frontend.add_shift`` / ``rescale``.

Decision: MinMo's encoder is "SenseVoice-Large (SAN-M + LFR)", but the public SenseVoice-Large
differs from that description and its weights are not released, so we import the SAN-M layout with
SenseVoice-Small key names at the sizes in ``config.yaml``. The ASR heads (``ctc.*``) and the query
table ``embed.*`` (SenseVoiceSmall prepends 4 language/event/emotion/ITN rows to the features before
its encoder) are skipped: MinMo's use of them is not published, and the encoder below computes
``SenseVoiceEncoderSmall.forward`` on the features alone.

The imported config keeps upstream's math: the FSMN kernel centred as ``sanm_shfit`` says
(``fsmn_right_context``), ``tp_norm`` applied even without tp blocks, LayerNorm eps 1e-5.
``SpeechEncoder.sanm_whole`` computes the upstream function exactly on a whole utterance (full
attention); the served stream is an approximation of it (chunked attention, look-ahead frames not yet
received read as zeros), measured by :mod:`services.importers.sensevoice_streaming`. The encoder
stage also holds MinMo's input projector, added by ``minmo models import minmo``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from services import encoder
from services.encoder import EncoderConfig, SpeechEncoder
from services.importers.cosyvoice2 import backbone_width
from services.importers.errors import CheckpointError, check_keys
from services.importers.output import write_stage
from services.importers.torch_files import load_state_dict, shapes

_SKIPPED_PREFIXES = ("ctc.", "embed.", "criterion_att.", "criterion.")
LAYER_NORM_EPS = 1e-5  # FunASR's LayerNorm: torch's default eps
PROJECTOR_PENDING = "projector: run `minmo models import minmo <dir> --out <weights>`"


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path} is not a YAML mapping")
    return doc


def read_am_mvn(path: Path, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(add_shift, rescale)`` from a Kaldi-nnet ``am.mvn``, each ``[dim]``."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (the CMVN statistics of the encoder's LFR features)")
    text = path.read_text()
    vectors: dict[str, torch.Tensor] = {}
    for component in ("AddShift", "Rescale"):
        found = re.search(rf"<{component}>[^\[]*\[([^\]]*)\]", text)
        if not found:
            raise CheckpointError(f"{path} has no <{component}> component")
        try:
            values = [float(v) for v in found.group(1).split()]
        except ValueError:
            raise CheckpointError(f"{path}: <{component}> holds a non-number") from None
        if len(values) != dim:
            raise CheckpointError(f"{path}: <{component}> has {len(values)} values, expected {dim} (n_mels x lfr_m)")
        vectors[component] = torch.tensor(values, dtype=torch.float32)
    return vectors["AddShift"], vectors["Rescale"]


def encoder_config(doc: dict[str, Any], llm_width: int, source: str) -> EncoderConfig:
    enc = doc.get("encoder_conf")
    front = doc.get("frontend_conf", {})
    if not isinstance(enc, dict):
        raise CheckpointError(f"{source}: encoder_conf is missing")
    kind = str(doc.get("encoder", ""))
    if kind and "SenseVoice" not in kind and "SANM" not in kind:
        raise CheckpointError(f"{source}: encoder is {doc.get('encoder')!r}, expected a SAN-M (SenseVoice) encoder")
    base = EncoderConfig.preset("minmo")
    for key, supported in (("normalize_before", True), ("concat_after", False)):
        if bool(enc.get(key, supported)) != supported:
            raise CheckpointError(f"{source}: encoder_conf.{key}={enc[key]!r}; only {supported} is supported")
    kernel = int(enc.get("kernel_size", base.kernel_size))
    left = (kernel - 1) // 2 + int(enc.get("sanm_shfit", 0))  # FunASR's MultiHeadedAttentionSANM padding
    if not 0 <= left <= kernel - 1:
        raise CheckpointError(
            f"{source}: encoder_conf.sanm_shfit {enc.get('sanm_shfit')} shifts the FSMN off its kernel"
        )
    try:
        return dataclasses.replace(
            base,
            sample_rate=int(front.get("fs", base.sample_rate)),
            n_mels=int(front.get("n_mels", base.n_mels)),
            frame_length_ms=int(front.get("frame_length", base.frame_length_ms)),
            frame_shift_ms=int(front.get("frame_shift", base.frame_shift_ms)),
            lfr_m=int(front.get("lfr_m", base.lfr_m)),
            lfr_n=int(front.get("lfr_n", base.lfr_n)),
            d_model=int(enc["output_size"]),
            attention_heads=int(enc["attention_heads"]),
            linear_units=int(enc["linear_units"]),
            num_blocks=int(enc["num_blocks"]),
            tp_blocks=int(enc.get("tp_blocks", 0)),
            kernel_size=kernel,
            fsmn_right_context=kernel - 1 - left,
            tp_norm=True,
            layer_norm_eps=LAYER_NORM_EPS,
            llm_dim=llm_width,
            # Placeholder until the minmo import sets the projector from MinMo's own config.
            projector_layers=0,
            projector_heads=1,
        )
    except KeyError as exc:
        raise CheckpointError(f"{source}: encoder_conf.{exc.args[0]} is missing") from None
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def import_sensevoice(source: Path, out: Path) -> list[str]:
    """Write ``out/encoder`` (pending the input projector); nothing is written if a check fails."""
    config = encoder_config(
        read_yaml(source / "config.yaml"),
        backbone_width(out, EncoderConfig.preset("minmo").llm_dim),
        str(source / "config.yaml"),
    )
    state = load_state_dict(source / "model.pt")
    tensors = {
        key[len("encoder.") :]: t
        for key, t in state.items()
        if key.startswith("encoder.") and not key.endswith("num_batches_tracked")
    }
    stray = sorted(k for k in state if not k.startswith(("encoder.", *_SKIPPED_PREFIXES)))
    if stray:
        raise CheckpointError(f"{source / 'model.pt'}: unexpected keys outside encoder.*: {', '.join(stray[:12])}")
    tensors["frontend.add_shift"], tensors["frontend.rescale"] = read_am_mvn(source / "am.mvn", config.lfr_dim)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in SpeechEncoder(config).state_dict().items()}
    expected = {k: s for k, s in expected.items() if not k.startswith("projector.")}
    check_keys(expected, shapes(tensors), source=f"{source / 'model.pt'} (encoder.* -> SAN-M encoder; am.mvn)")
    target = out / encoder.STAGE
    write_stage(
        target,
        tensors,
        config,
        stage=encoder.STAGE,
        sources={"checkpoint": str(source.resolve())},
        pending=[PROJECTOR_PENDING],
    )
    return [
        f"encoder: {len(tensors)} tensors, {config.num_blocks}+{config.tp_blocks} SAN-M blocks x {config.d_model} "
        f"-> {target} (pending: MinMo input projector)"
    ]
