"""CosyVoice 2's token2wav (``flow.pt`` + ``hift.pt``) as our vocoder stage.

Key names: ``flow.pt`` is the state dict of ``CausalMaskedDiffWithXvec`` (``input_embedding``,
``spk_embed_affine_layer``, ``encoder.*`` of ``UpsampleConformerEncoder``, ``encoder_proj``,
``decoder.estimator.*`` of ``CausalConditionalDecoder``); ``hift.pt`` that of ``HiFTGenerator``
(``m_source``, ``conv_pre``, ``ups``, ``source_downs``, ``source_resblocks``, ``resblocks``,
``conv_post``, ``f0_predictor.condnet``/``classifier``) with weight-normalised convolutions. Our
:class:`~services.vocoder.model.Token2Wav` holds them under ``flow.`` and ``hift.`` with the same
names, so the mapping is a prefix plus folding the weight norm. Sizes come from ``cosyvoice2.yaml``;
the serving choices of the minmo preset (left-chunk bound, Euler steps, streaming overlap) are kept.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from services.importers.errors import CheckpointError
from services.importers.hyperyaml import section
from services.importers.weight_norm import fold_weight_norm
from services.vocoder import FlowConfig, HiftConfig, Token2Wav, VocoderConfig

# CosyVoice's UpsampleConformerEncoder builds a fixed 4 layers after the upsampling.
COSYVOICE_UP_BLOCKS = 4


def _need(node: dict[str, Any], key: str, where: str) -> Any:
    if key not in node:
        raise CheckpointError(f"{where}: {key} is missing")
    return node[key]


def flow_config(doc: dict[str, Any], base: FlowConfig, source: str) -> FlowConfig:
    flow = section(doc, "flow", tag_suffix="CausalMaskedDiffWithXvec", source=source)
    enc = section(flow, "encoder", tag_suffix="UpsampleConformerEncoder", source=f"{source} flow")
    dec = section(flow, "decoder", tag_suffix="CausalConditionalCFM", source=f"{source} flow")
    est = section(dec, "estimator", tag_suffix="CausalConditionalDecoder", source=f"{source} flow.decoder")
    where = f"{source} flow"
    if enc.get("use_cnn_module") or enc.get("macaron_style"):
        raise CheckpointError(f"{where}.encoder uses the Conformer conv module or macaron FFN; ours has neither")
    channels = list(_need(est, "channels", f"{where}.decoder.estimator"))
    if len(channels) != 1:
        raise CheckpointError(f"{where}.decoder.estimator.channels is {channels}: our U-Net has one level")
    mel = int(_need(flow, "output_size", where))
    if int(est.get("in_channels", 4 * mel)) != 4 * mel or int(est.get("out_channels", mel)) != mel:
        raise CheckpointError(f"{where}.decoder.estimator must read 4 x {mel} channels and write {mel}")
    cfm = dec.get("cfm_params", {})
    cfm = cfm.get("content", cfm) if isinstance(cfm, dict) else {}
    return dataclasses.replace(
        base,
        vocab_size=int(_need(flow, "vocab_size", where)),
        input_size=int(_need(flow, "input_size", where)),
        output_size=mel,
        spk_embed_dim=int(_need(flow, "spk_embed_dim", where)),
        token_mel_ratio=int(flow.get("token_mel_ratio", base.token_mel_ratio)),
        pre_lookahead_len=int(flow.get("pre_lookahead_len", base.pre_lookahead_len)),
        chunk_size=int(enc.get("static_chunk_size", base.chunk_size)),
        encoder_size=int(_need(enc, "output_size", f"{where}.encoder")),
        encoder_heads=int(_need(enc, "attention_heads", f"{where}.encoder")),
        encoder_linear_units=int(_need(enc, "linear_units", f"{where}.encoder")),
        encoder_blocks=int(_need(enc, "num_blocks", f"{where}.encoder")),
        encoder_up_blocks=int(enc.get("num_up_blocks", COSYVOICE_UP_BLOCKS)),
        estimator_channels=int(channels[0]),
        estimator_heads=int(_need(est, "num_heads", f"{where}.decoder.estimator")),
        estimator_head_dim=int(_need(est, "attention_head_dim", f"{where}.decoder.estimator")),
        estimator_blocks=int(_need(est, "n_blocks", f"{where}.decoder.estimator")),
        estimator_mid_blocks=int(_need(est, "num_mid_blocks", f"{where}.decoder.estimator")),
        cfg_rate=float(cfm.get("inference_cfg_rate", base.cfg_rate)),
    )


def hift_config(doc: dict[str, Any], base: HiftConfig, source: str) -> HiftConfig:
    hift = section(doc, "hift", tag_suffix="HiFTGenerator", source=source)
    f0 = section(hift, "f0_predictor", tag_suffix="ConvRNNF0Predictor", source=f"{source} hift")
    istft = dict(hift.get("istft_params", {}))
    where = f"{source} hift"

    def ints(key: str) -> tuple[int, ...]:
        return tuple(int(v) for v in _need(hift, key, where))

    def nested(key: str) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(int(v) for v in row) for row in _need(hift, key, where))

    try:
        return dataclasses.replace(
            base,
            in_channels=int(_need(hift, "in_channels", where)),
            base_channels=int(_need(hift, "base_channels", where)),
            nb_harmonics=int(_need(hift, "nb_harmonics", where)),
            sampling_rate=int(_need(hift, "sampling_rate", where)),
            nsf_alpha=float(hift.get("nsf_alpha", base.nsf_alpha)),
            nsf_sigma=float(hift.get("nsf_sigma", base.nsf_sigma)),
            nsf_voiced_threshold=float(hift.get("nsf_voiced_threshold", base.nsf_voiced_threshold)),
            upsample_rates=ints("upsample_rates"),
            upsample_kernel_sizes=ints("upsample_kernel_sizes"),
            n_fft=int(istft.get("n_fft", base.n_fft)),
            hop_len=int(istft.get("hop_len", base.hop_len)),
            resblock_kernel_sizes=ints("resblock_kernel_sizes"),
            resblock_dilation_sizes=nested("resblock_dilation_sizes"),
            source_resblock_kernel_sizes=ints("source_resblock_kernel_sizes"),
            source_resblock_dilation_sizes=nested("source_resblock_dilation_sizes"),
            lrelu_slope=float(hift.get("lrelu_slope", base.lrelu_slope)),
            audio_limit=float(hift.get("audio_limit", base.audio_limit)),
            f0_cond_channels=int(f0.get("cond_channels", base.f0_cond_channels)),
        )
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def vocoder_config(doc: dict[str, Any], source: str) -> VocoderConfig:
    base = VocoderConfig.preset("minmo")
    try:
        return dataclasses.replace(
            base, flow=flow_config(doc, base.flow, source), hift=hift_config(doc, base.hift, source)
        )
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


# hift.pt saved by CosyVoice's GAN recipe (HiFiGan wrapper) names the generator's tensors ``generator.*``;
# upstream strips it when it loads hift.pt (cosyvoice/cli/model.py), and so do we.
GAN_PREFIX = "generator."


def vocoder_tensors(flow: dict[str, torch.Tensor], hift: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names for the two state dicts (``default_speaker`` is added by the caller)."""
    out = {f"flow.{k}": v for k, v in flow.items()}
    hift = {k.removeprefix(GAN_PREFIX): v for k, v in hift.items()}
    out.update({f"hift.{k}": v for k, v in fold_weight_norm(hift).items()})
    return out


def expected_vocoder_shapes(config: VocoderConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        module = Token2Wav(config)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}
