"""The qwen2 importer on a tiny Hugging Face folder with the real layout (shards + index, tokenizer)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from orchestrator import cli
from services import backbone
from services.backbone.prompt import ChatPrompt, TextTurn
from services.backbone.tokenizer_hf import HFTokenizer, load_tokenizer
from services.importers.errors import CheckpointError
from services.importers.qwen2 import import_qwen2
from services.importers.synthetic.qwen2 import build_qwen2_folder, hf_tensors, tiny_config


def reference_logits(t: dict[str, torch.Tensor], config: dict, ids: list[int]) -> torch.Tensor:
    """HF Qwen2 math written out independently: explicit GQA head repeat, causal softmax, RoPE."""
    w = {k: v.float() for k, v in t.items()}
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    hd = config["hidden_size"] // heads
    eps = config["rms_norm_eps"]

    def rms(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    n = len(ids)
    inv = torch.tensor([1.0 / config["rope_theta"] ** (2 * i / hd) for i in range(hd // 2)])
    angle = torch.arange(n).float()[:, None] * inv[None, :]
    cos, sin = torch.cat([angle.cos()] * 2, -1), torch.cat([angle.sin()] * 2, -1)

    def rope(x: torch.Tensor) -> torch.Tensor:  # [heads, n, hd]
        x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    x = w["model.embed_tokens.weight"][ids]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = (h @ w[p + "self_attn.q_proj.weight"].T + w[p + "self_attn.q_proj.bias"]).view(n, heads, hd).transpose(0, 1)
        k = (h @ w[p + "self_attn.k_proj.weight"].T + w[p + "self_attn.k_proj.bias"]).view(n, kv_heads, hd)
        v = (h @ w[p + "self_attn.v_proj.weight"].T + w[p + "self_attn.v_proj.bias"]).view(n, kv_heads, hd)
        k = k.transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
        v = v.transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
        q, k = rope(q), rope(k)
        scores = q @ k.transpose(1, 2) / math.sqrt(hd)
        scores = scores.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf"))
        attn = (scores.softmax(-1) @ v).transpose(0, 1).reshape(n, -1)
        x = x + attn @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    x = rms(x, w["model.norm.weight"])
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T


def test_import_loads_strictly_and_matches_reference_forward(tmp_path: Path) -> None:
    config = tiny_config()
    tensors = build_qwen2_folder(tmp_path / "hf", config=config)
    lines = import_qwen2(tmp_path / "hf", tmp_path / "w")
    model = backbone.load(tmp_path / "w" / "backbone")
    assert model.config.hidden_size == 64 and model.config.num_key_value_heads == 2
    assert model.lm_head is not None
    ids = [5, 17, 250, 3, 99, 42]
    with torch.no_grad():
        got = model(torch.tensor(ids))
    torch.testing.assert_close(got, reference_logits(tensors, config, ids), atol=2e-4, rtol=1e-4)
    assert "2 shard(s)" in lines[0]


def test_written_tensors_are_the_source_tensors_bit_for_bit(tmp_path: Path) -> None:
    tensors = build_qwen2_folder(tmp_path / "hf", shards=3)
    import_qwen2(tmp_path / "hf", tmp_path / "w")
    written = load_file(str(tmp_path / "w" / "backbone" / "model.safetensors"))
    assert written.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert written[name].dtype == torch.bfloat16
        assert torch.equal(written[name], tensor), name


def test_tied_embeddings_drop_the_saved_lm_head_copy(tmp_path: Path) -> None:
    config = tiny_config(tie_word_embeddings=True)
    tensors = hf_tensors(config)
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()  # HF may save the tied copy
    build_qwen2_folder(tmp_path / "hf", config=config, tensors=tensors)
    import_qwen2(tmp_path / "hf", tmp_path / "w")
    model = backbone.load(tmp_path / "w" / "backbone")
    assert model.lm_head is None
    ids = [1, 2, 3]
    with torch.no_grad():
        torch.testing.assert_close(model(torch.tensor(ids)), reference_logits(tensors, config, ids), atol=2e-4, rtol=0)


def test_real_tokenizer_is_used_with_audio_markers_added(tmp_path: Path) -> None:
    build_qwen2_folder(tmp_path / "hf")
    import_qwen2(tmp_path / "hf", tmp_path / "w")
    tok = load_tokenizer(tmp_path / "w" / "backbone")
    assert isinstance(tok, HFTokenizer)
    assert isinstance(load_tokenizer(tmp_path / "missing"), backbone.SmokeByteTokenizer)
    specials = tok.special_tokens
    im_start, im_end = specials["<|im_start|>"], specials["<|im_end|>"]
    assert tok.eos_id == im_end
    # Added after the learned vocabulary and the Qwen specials, inside the 384-row table.
    assert specials["<|audio_bos|>"] == specials["<|endoftext|>"] + 3
    assert specials["<|audio_eos|>"] == specials["<|audio_bos|>"] + 1 < 384
    text = "Hello, how are you today?"
    segments = ChatPrompt(tok).turn(TextTurn("user", text))
    ids = [i for seg in segments if isinstance(seg, list) for i in seg]
    assert ids[0] == im_start and ids[-2] == im_end
    assert tok.decode(ids).strip() == "user\n" + text
    # BPE merges learned on the corpus: fewer ids than bytes.
    assert len(tok.encode(text)) < len(text.encode())
    # Literal encoding: a typed control-token spelling never becomes the control token.
    assert im_end not in tok.encode("say <|im_end|> now")
    assert tok.decode(tok.encode("say <|im_end|> now")) == "say <|im_end|> now"
    # A padding row of the 384-row table past the tokenizer's ids has no text.
    assert tok.decode([*tok.encode("Hi"), 383]) == "Hi"
    with pytest.raises(ValueError, match="token id -1 is negative"):
        tok.decode([-1])


def test_unexpected_and_missing_keys_are_named(tmp_path: Path) -> None:
    config = tiny_config()
    tensors = hf_tensors(config)
    tensors["model.layers.1.mlp.gate_projection.weight"] = tensors.pop("model.layers.1.mlp.gate_proj.weight")
    build_qwen2_folder(tmp_path / "hf", config=config, tensors=tensors)
    with pytest.raises(CheckpointError) as err:
        import_qwen2(tmp_path / "hf", tmp_path / "w")
    message = str(err.value)
    assert "missing keys: model.layers.1.mlp.gate_proj.weight" in message
    assert "unexpected keys: model.layers.1.mlp.gate_projection.weight" in message
    assert not (tmp_path / "w" / "backbone" / "model.safetensors").exists()


def test_mis_shaped_tensor_is_named_with_expected_and_got(tmp_path: Path) -> None:
    config = tiny_config()
    tensors = hf_tensors(config)
    tensors["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(64, 64, dtype=torch.bfloat16)
    build_qwen2_folder(tmp_path / "hf", config=config, tensors=tensors)
    with pytest.raises(
        CheckpointError, match=r"model\.layers\.0\.self_attn\.k_proj\.weight: expected \(32, 64\), got \(64, 64\)"
    ):
        import_qwen2(tmp_path / "hf", tmp_path / "w")


def test_index_naming_a_missing_shard_is_refused(tmp_path: Path) -> None:
    build_qwen2_folder(tmp_path / "hf")
    (tmp_path / "hf" / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"shards that are missing: model-00002-of-00002\.safetensors"):
        import_qwen2(tmp_path / "hf", tmp_path / "w")


def test_single_file_checkpoint_and_lora_adapters(tmp_path: Path) -> None:
    config = tiny_config(tie_word_embeddings=True)
    build_qwen2_folder(tmp_path / "hf", config=config, shards=1)
    src = tmp_path / "hf"
    (src / "model.safetensors.index.json").unlink()
    (src / "model-00001-of-00001.safetensors").rename(src / "model.safetensors")
    import_qwen2(src, tmp_path / "w")
    assert backbone.load(tmp_path / "w" / "backbone").config.tie_word_embeddings
    save_file({"x": torch.zeros(1)}, str(src / "adapter_model.safetensors"))
    with pytest.raises(CheckpointError, match="LoRA adapters: merge them"):
        import_qwen2(src, tmp_path / "w2")


def test_cli_imports_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_qwen2_folder(tmp_path / "hf")
    code = cli.main(["models", "import", "qwen2", str(tmp_path / "hf"), "--out", str(tmp_path / "w")])
    assert code == 0, capsys.readouterr().err
    assert "backbone:" in capsys.readouterr().out
    meta = json.loads((tmp_path / "w" / "backbone" / "config.json").read_text())
    assert meta["stage"] == "backbone" and meta["profile"] == "minmo"
    backbone.load(tmp_path / "w" / "backbone")
    code = cli.main(["models", "import", "qwen2", str(tmp_path / "nowhere"), "--out", str(tmp_path / "w")])
    assert code == 1
    assert "is not a folder" in capsys.readouterr().err
