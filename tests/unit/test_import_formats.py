"""Format helpers of the importers: weight-norm folding, the streamed safetensors writer, refusals."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from services.backbone import Qwen2Config
from services.importers.cosyvoice2 import import_cosyvoice2, speech_lm_config
from services.importers.cosyvoice2_vocoder import vocoder_config
from services.importers.errors import CheckpointError
from services.importers.hyperyaml import load_hyperpyyaml
from services.importers.qwen2 import qwen2_config_from_hf
from services.importers.stream_writer import write_streamed
from services.importers.synthetic.cosyvoice2 import YAML, build_cosyvoice2_folder
from services.importers.voices import read_spk2info
from services.importers.weight_norm import fold_weight_norm
from services.speech_lm import SpeechLMConfig
from services.vocoder import VocoderConfig


@pytest.mark.parametrize("layer", [nn.Conv1d(6, 4, 3), nn.ConvTranspose1d(6, 4, 5, stride=2)])
def test_fold_matches_torch_weight_norm_in_both_saved_forms(layer: nn.Module) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the legacy API is what older checkpoints used
        legacy = nn.utils.weight_norm(layer)
    with torch.no_grad():
        legacy.weight_g.mul_(torch.rand_like(legacy.weight_g) + 0.5)  # g no longer equals ||v||
    legacy(torch.randn(1, 6, 9))  # the forward pre-hook recomputes .weight from g and v
    expected = legacy.weight.detach().clone()
    state = {f"conv.{k}": v for k, v in legacy.state_dict().items()}
    assert {"conv.weight_g", "conv.weight_v"} <= state.keys()
    folded = fold_weight_norm(state)
    assert set(folded) == {"conv.weight", "conv.bias"}
    torch.testing.assert_close(folded["conv.weight"], expected)

    modern = {
        "conv.parametrizations.weight.original0": state["conv.weight_g"],
        "conv.parametrizations.weight.original1": state["conv.weight_v"],
        "conv.bias": state["conv.bias"],
    }
    torch.testing.assert_close(fold_weight_norm(modern)["conv.weight"], expected)


def test_streamed_file_reads_back_with_safetensors(tmp_path: Path) -> None:
    tensors = {
        "a": torch.randn(3, 5).to(torch.bfloat16),
        "b": torch.arange(7, dtype=torch.int64),
        "c": torch.randn(2, 2, 2),
    }
    plan = {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}
    write_streamed(tmp_path / "m.safetensors", plan, iter(tensors.items()), metadata={"stage": "x"})
    back = load_file(str(tmp_path / "m.safetensors"))
    for name, tensor in tensors.items():
        assert torch.equal(back[name], tensor)
    with pytest.raises(ValueError, match="tensor c arrived out of the planned order"):
        write_streamed(tmp_path / "bad.safetensors", plan, iter([("c", tensors["c"])]), metadata={})
    assert not list(tmp_path.glob("bad.safetensors*"))


def test_cosyvoice3_folder_is_refused_by_its_yaml(tmp_path: Path) -> None:
    build_cosyvoice2_folder(tmp_path / "cv")
    yaml = YAML.replace("cosyvoice.llm.llm.Qwen2LM", "cosyvoice.llm.llm.CosyVoice3LM")
    (tmp_path / "cv" / "cosyvoice2.yaml").write_text(yaml)
    with pytest.raises(CheckpointError, match=r"llm is !new:cosyvoice\.llm\.llm\.CosyVoice3LM, expected a Qwen2LM"):
        import_cosyvoice2(tmp_path / "cv", tmp_path / "w")


def test_spk2info_entry_with_the_wrong_width_is_named(tmp_path: Path) -> None:
    torch.save({"a": {"embedding": torch.zeros(1, 192)}, "b": {"embedding": torch.zeros(1, 256)}}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match=r"speaker 'b' embedding: expected \(1, 192\), got \(1, 256\)"):
        read_spk2info(tmp_path / "s.pt")


# The published configs (Qwen2.5-7B-Instruct/config.json, CosyVoice2-0.5B/CosyVoice-BlankEN/config.json
# and cosyvoice2.yaml sizes): importing them must give exactly our minmo presets, so the presets'
# parameter shapes are the real checkpoints' shapes.
QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "use_sliding_window": False,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 152064,
}
QWEN25_05B = {
    **QWEN25_7B,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "tie_word_embeddings": True,
    "vocab_size": 151936,
}
REAL_SIZES = {
    "llm_input_size: 32": "llm_input_size: 896",
    "llm_output_size: 32": "llm_output_size: 896",
    "        output_size: 512\n        attention_heads: 2\n        linear_units: 128\n        num_blocks: 2": (
        "        output_size: 512\n        attention_heads: 8\n        linear_units: 2048\n        num_blocks: 6"
    ),
    "channels: [32]": "channels: [256]",
    "attention_head_dim: 16": "attention_head_dim: 64",
    "n_blocks: 1": "n_blocks: 4",
    "num_mid_blocks: 1": "num_mid_blocks: 12",
    "            num_heads: 2": "            num_heads: 8",
    "base_channels: 32": "base_channels: 512",
    "resblock_kernel_sizes: [3]": "resblock_kernel_sizes: [3, 7, 11]",
    "resblock_dilation_sizes: [[1, 3]]": "resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]",
    "source_resblock_kernel_sizes: [3, 3, 3]": "source_resblock_kernel_sizes: [7, 7, 11]",
    "source_resblock_dilation_sizes: [[1], [1], [1]]": (
        "source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]"
    ),
    "cond_channels: 16": "cond_channels: 512",
}


def test_published_configs_map_onto_the_minmo_presets(tmp_path: Path) -> None:
    assert qwen2_config_from_hf(QWEN25_7B, source="qwen") == Qwen2Config.preset("minmo")
    yaml = YAML
    for small, real in REAL_SIZES.items():
        assert small in yaml, small
        yaml = yaml.replace(small, real)
    (tmp_path / "CosyVoice-BlankEN").mkdir()
    (tmp_path / "CosyVoice-BlankEN" / "config.json").write_text(json.dumps(QWEN25_05B))
    (tmp_path / "cosyvoice2.yaml").write_text(yaml)
    doc = load_hyperpyyaml(tmp_path / "cosyvoice2.yaml")
    assert vocoder_config(doc, "cosyvoice2.yaml") == VocoderConfig.preset("minmo")
    assert speech_lm_config(tmp_path, doc, 3584) == SpeechLMConfig.preset("minmo")


def test_unknown_default_voice_lists_the_known_ones(tmp_path: Path) -> None:
    build_cosyvoice2_folder(tmp_path / "cv")
    with pytest.raises(
        CheckpointError, match=r"--default-voice 'nobody' is not among the imported voices; voices: 中文女, 英文男"
    ):
        import_cosyvoice2(tmp_path / "cv", tmp_path / "w", default_voice="nobody")
    assert not (tmp_path / "w").exists()
