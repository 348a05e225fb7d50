"""A tiny CosyVoice 2 folder: HyperPyYAML config, ``llm.pt``/``flow.pt``/``hift.pt``, ONNX models, voices.

``llm.pt`` keys are written out from CosyVoice's ``Qwen2LM`` (body under ``llm.model.model.*``, the
text ``embed_tokens`` and ``lm_head`` included as in the release). ``flow.pt`` / ``hift.pt`` come in
two kinds:

- ``layout="upstream"``: every key and shape from ``cosyvoice2_upstream_layout.json``, recorded from
  FunAudioLLM/CosyVoice's own ``CausalMaskedDiffWithXvec`` / ``HiFTGenerator`` at these sizes (see its
  ``provenance``), filled with seeded random values: a name or shape of the release our importer
  does not know fails the import, whatever our modules call it.
- ``layout="ours"`` (the default): our Token2Wav's tensors turned back into the checkpoint's form
  (no ``flow.`` / ``hift.`` prefix, HiFT's convolutions weight-normalised), so the import can be
  checked to reproduce that model's audio; ``test_import_speech`` checks both layouts agree.

The release ships no ``spk2info.pt``; ``voices`` picks what the folder carries: ``"sft"`` (CosyVoice 1
style ``embedding`` entries), ``"zero_shot"`` (what CosyVoice 2's ``save_spkinfo`` writes:
``llm_embedding``, ``flow_embedding`` and the prompt's tokens and mel) or ``None`` (the release).
``hift_prefix="generator."`` writes hift.pt as CosyVoice's GAN recipe saves it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import torch

from services.importers.synthetic.onnx_models import build_campplus, build_speech_tokenizer
from services.vocoder import FlowConfig, HiftConfig, StreamConfig, Token2Wav, VocoderConfig

SPEECH_TOKENS = 6561
BODY: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
    "vocab_size": 100,
    "use_sliding_window": False,
}
# The shape of examples/libritts/cosyvoice2/conf/cosyvoice2.yaml at tiny sizes (sections we read).
YAML = """\
# set random seed, so that you may reproduce your result.
__set_seed1: !apply:random.seed [1986]
sample_rate: 24000
llm_input_size: 32
llm_output_size: 32
spk_embed_dim: 192
qwen_pretrain_path: ''
token_frame_rate: 25
token_mel_ratio: 2
chunk_size: 25
num_decoding_left_chunks: -1

llm: !new:cosyvoice.llm.llm.Qwen2LM
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    speech_token_size: 6561
    length_normalized_loss: True
    lsm_weight: 0
    mix_ratio: [5, 15]
    llm: !new:cosyvoice.llm.llm.Qwen2Encoder
        pretrain_path: !ref <qwen_pretrain_path>
    sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: 25
        win_size: 10
        tau_r: 0.1

flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec
    input_size: 512
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: 6561
    input_frame_rate: !ref <token_frame_rate>
    only_mask_loss: True
    token_mel_ratio: !ref <token_mel_ratio>
    pre_lookahead_len: 3
    encoder: !new:cosyvoice.transformer.upsample_encoder.UpsampleConformerEncoder
        output_size: 512
        attention_heads: 2
        linear_units: 128
        num_blocks: 2
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: 512
        use_cnn_module: False
        macaron_style: False
        static_chunk_size: !ref <chunk_size>
    decoder: !new:cosyvoice.flow.flow_matching.CausalConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.CausalConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [32]
            dropout: 0.0
            attention_head_dim: 16
            n_blocks: 1
            num_mid_blocks: 1
            num_heads: 2
            act_fn: 'gelu'
            static_chunk_size: !ref <chunk_size> * <token_mel_ratio>
            num_decoding_left_chunks: !ref <num_decoding_left_chunks>

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: 32
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 5, 3]
    upsample_kernel_sizes: [16, 11, 7]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3]
    resblock_dilation_sizes: [[1, 3]]
    source_resblock_kernel_sizes: [3, 3, 3]
    source_resblock_dilation_sizes: [[1], [1], [1]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: 16
"""
# HiFTGenerator modules CosyVoice wraps in weight_norm.
_WEIGHT_NORMED = re.compile(
    r"^(conv_pre|conv_post|ups\.\d+|(source_)?resblocks\.\d+\.convs[12]\.\d+|f0_predictor\.condnet\.\d+)\.weight$"
)
VOICES = ("中文女", "英文男")


def vocoder_config() -> VocoderConfig:
    """What the importer must derive from :data:`YAML` (plus the minmo preset's serving choices)."""
    base = VocoderConfig.preset("minmo")
    flow = FlowConfig(
        input_size=512,
        chunk_size=25,
        left_chunks=base.flow.left_chunks,
        encoder_size=512,
        encoder_heads=2,
        encoder_linear_units=128,
        encoder_blocks=2,
        encoder_up_blocks=4,
        estimator_channels=32,
        estimator_heads=2,
        estimator_head_dim=16,
        estimator_blocks=1,
        estimator_mid_blocks=1,
    )
    hift = HiftConfig(
        base_channels=32,
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1, 3),),
        source_resblock_kernel_sizes=(3, 3, 3),
        source_resblock_dilation_sizes=((1,), (1,), (1,)),
        f0_cond_channels=16,
    )
    return VocoderConfig(flow=flow, hift=hift, stream=StreamConfig(**vars(base.stream)))


def llm_state(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    h, inter = BODY["hidden_size"], BODY["intermediate_size"]
    kv = BODY["num_key_value_heads"] * h // BODY["num_attention_heads"]

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.05

    body = "llm.model.model."
    state = {body + "embed_tokens.weight": rand(BODY["vocab_size"], h)}
    for i in range(BODY["num_hidden_layers"]):
        p = f"{body}layers.{i}."
        for name, shape in (("q_proj", (h, h)), ("k_proj", (kv, h)), ("v_proj", (kv, h))):
            state[f"{p}self_attn.{name}.weight"] = rand(*shape)
            state[f"{p}self_attn.{name}.bias"] = rand(shape[0])
        state[p + "self_attn.o_proj.weight"] = rand(h, h)
        state[p + "mlp.gate_proj.weight"] = rand(inter, h)
        state[p + "mlp.up_proj.weight"] = rand(inter, h)
        state[p + "mlp.down_proj.weight"] = rand(h, inter)
        state[p + "input_layernorm.weight"] = 1 + rand(h)
        state[p + "post_attention_layernorm.weight"] = 1 + rand(h)
    state[body + "norm.weight"] = 1 + rand(h)
    state["llm.model.lm_head.weight"] = state[body + "embed_tokens.weight"]
    state["llm_embedding.weight"] = rand(2, h)
    state["speech_embedding.weight"] = rand(SPEECH_TOKENS + 3, h)
    state["llm_decoder.weight"] = rand(SPEECH_TOKENS + 3, h)
    state["llm_decoder.bias"] = rand(SPEECH_TOKENS + 3)
    return state


def _weight_normed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if _WEIGHT_NORMED.match(key):
            base = key[: -len(".weight")]
            dims = list(range(1, tensor.dim()))
            out[f"{base}.parametrizations.weight.original0"] = tensor.pow(2).sum(dims, keepdim=True).sqrt()
            out[f"{base}.parametrizations.weight.original1"] = tensor.clone()
        else:
            out[key] = tensor
    return out


def token2wav_states(seed: int = 0) -> tuple[Token2Wav, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A seeded Token2Wav and its ``flow.pt`` / ``hift.pt`` state dicts in CosyVoice's form."""
    torch.manual_seed(seed)
    model = Token2Wav(vocoder_config()).eval()
    state = model.state_dict()
    flow = {k[len("flow.") :]: v.clone() for k, v in state.items() if k.startswith("flow.")}
    hift = _weight_normed({k[len("hift.") :]: v.clone() for k, v in state.items() if k.startswith("hift.")})
    return model, flow, hift


def spk2info(seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return {
        name: {"embedding": torch.randn(1, 192, generator=gen), "speech_feat": torch.randn(1, 10, 80, generator=gen)}
        for name in VOICES
    }


def zero_shot_spk2info(seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Entries as CosyVoice 2's ``add_zero_shot_spk`` stores them (``frontend_zero_shot``'s model input)."""
    gen = torch.Generator().manual_seed(seed + 100)
    out = {}
    for name in VOICES:
        embedding = torch.randn(1, 192, generator=gen)
        tokens = torch.randint(0, SPEECH_TOKENS, (1, 12), generator=gen, dtype=torch.int32)
        out[name] = {
            "prompt_text": torch.randint(0, 100, (1, 4), generator=gen, dtype=torch.int32),
            "prompt_text_len": torch.tensor([4], dtype=torch.int32),
            "llm_prompt_speech_token": tokens,
            "llm_prompt_speech_token_len": torch.tensor([12], dtype=torch.int32),
            "flow_prompt_speech_token": tokens,
            "flow_prompt_speech_token_len": torch.tensor([12], dtype=torch.int32),
            "prompt_speech_feat": torch.randn(1, 24, 80, generator=gen),
            "prompt_speech_feat_len": torch.tensor([24], dtype=torch.int32),
            "llm_embedding": embedding,
            "flow_embedding": embedding,
        }
    return out


UPSTREAM_LAYOUT = Path(__file__).with_name("cosyvoice2_upstream_layout.json")


def upstream_states(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``flow.pt`` / ``hift.pt`` with upstream's names and shapes and seeded values (no module of ours involved)."""
    layout = json.loads(UPSTREAM_LAYOUT.read_text())
    gen = torch.Generator().manual_seed(seed)

    def fill(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
        # positive values for norms / weight-norm magnitudes, small ones elsewhere
        return {
            k: 0.05 * torch.randn(*shape, generator=gen) + (1.0 if k.endswith("original0") else 0.0)
            for k, shape in shapes.items()
        }

    return fill(layout["flow"]), fill(layout["hift"])


def build_cosyvoice2_folder(
    directory: Path,
    *,
    seed: int = 0,
    llm: dict[str, torch.Tensor] | None = None,
    flow: dict[str, torch.Tensor] | None = None,
    layout: Literal["ours", "upstream"] = "ours",
    voices: Literal["sft", "zero_shot"] | None = "sft",
    hift_prefix: str = "",
) -> Token2Wav | None:
    """Write the folder; returns the Token2Wav whose flow/hift weights it holds (None for the upstream layout)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cosyvoice2.yaml").write_text(YAML)
    (directory / "CosyVoice-BlankEN").mkdir(exist_ok=True)
    (directory / "CosyVoice-BlankEN" / "config.json").write_text(json.dumps(BODY, indent=2))
    torch.save(llm if llm is not None else llm_state(seed), directory / "llm.pt")
    model: Token2Wav | None = None
    if layout == "ours":
        model, flow_state, hift_state = token2wav_states(seed)
    else:
        flow_state, hift_state = upstream_states(seed)
    torch.save(flow if flow is not None else flow_state, directory / "flow.pt")
    torch.save({hift_prefix + k: v for k, v in hift_state.items()}, directory / "hift.pt")
    if voices is not None:
        torch.save(spk2info(seed) if voices == "sft" else zero_shot_spk2info(seed), directory / "spk2info.pt")
    build_campplus(directory / "campplus.onnx", seed=seed)
    build_speech_tokenizer(directory / "speech_tokenizer_v2.onnx")
    return model
