"""A tiny Hugging Face Qwen2 folder: sharded safetensors + index, config and a byte-level BPE tokenizer.

Key names are written out here from HF ``Qwen2ForCausalLM`` (not derived from our module), so the
importer is tested against the checkpoint's names, not against itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_CORPUS = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>",
    "Hello, how are you today? I am fine, thank you.",
    "The quick brown fox jumps over the lazy dog.",
    "MinMo listens and speaks at the same time.",
]


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """An HF ``config.json`` of Qwen2 shape relations (GQA, biases on q/k/v) at tiny sizes."""
    config: dict[str, Any] = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 256,
        "max_window_layers": 2,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 384,
    }
    config.update(overrides)
    return config


def hf_tensors(config: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """``Qwen2ForCausalLM`` state dict in bf16 with HF's key names."""
    gen = torch.Generator().manual_seed(seed)
    h, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = config["num_key_value_heads"] * (h // config["num_attention_heads"])

    def rand(*shape: int, scale: float = 0.05) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * scale).to(torch.bfloat16)

    t: dict[str, torch.Tensor] = {"model.embed_tokens.weight": rand(vocab, h, scale=0.5)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = rand(h, h)
        t[p + "self_attn.q_proj.bias"] = rand(h)
        t[p + "self_attn.k_proj.weight"] = rand(kv, h)
        t[p + "self_attn.k_proj.bias"] = rand(kv)
        t[p + "self_attn.v_proj.weight"] = rand(kv, h)
        t[p + "self_attn.v_proj.bias"] = rand(kv)
        t[p + "self_attn.o_proj.weight"] = rand(h, h)
        t[p + "mlp.gate_proj.weight"] = rand(inter, h)
        t[p + "mlp.up_proj.weight"] = rand(inter, h)
        t[p + "mlp.down_proj.weight"] = rand(h, inter)
        t[p + "input_layernorm.weight"] = (1 + rand(h, scale=0.1).float()).to(torch.bfloat16)
        t[p + "post_attention_layernorm.weight"] = (1 + rand(h, scale=0.1).float()).to(torch.bfloat16)
    t["model.norm.weight"] = (1 + rand(h, scale=0.1).float()).to(torch.bfloat16)
    if not config["tie_word_embeddings"]:
        t["lm_head.weight"] = rand(vocab, h)
    return t


def tiny_tokenizer(vocab_size: int = 300) -> Tokenizer:
    """Byte-level BPE like Qwen2.5's, with the Qwen chat specials added after the learned vocabulary."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in QWEN_SPECIALS])
    return tok


def build_qwen2_folder(
    directory: Path,
    *,
    shards: int = 2,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Write the folder; returns the tensors written (after any caller edits passed as ``tensors``)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = config or tiny_config()
    tensors = tensors if tensors is not None else hf_tensors(config, seed)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    names = list(tensors)
    per = -(-len(names) // shards)
    weight_map: dict[str, str] = {}
    for s in range(shards):
        shard = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n].contiguous() for n in names[s * per : (s + 1) * per]}
        save_file(part, str(directory / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    tiny_tokenizer().save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "model_max_length": 131072})
    )
    (directory / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 151643, "eos_token_id": [151645, 151643], "temperature": 0.7, "top_p": 0.8})
    )
    return tensors
