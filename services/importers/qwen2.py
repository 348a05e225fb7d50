"""Import a Qwen2.5-7B-Instruct Hugging Face folder as the backbone stage, with its tokenizer.

Source layout (Hugging Face): ``config.json``, ``model-0000i-of-0000n.safetensors`` plus
``model.safetensors.index.json`` (or one ``model.safetensors``), ``tokenizer.json``,
``tokenizer_config.json``, ``generation_config.json``. Our backbone uses HF's parameter names
(``model.embed_tokens``, ``model.layers.N.self_attn.{q,k,v,o}_proj``, ``model.layers.N.mlp.*``,
``model.norm``, ``lm_head``), so the mapping is the identity except that a tied ``lm_head.weight``
is dropped and non-persistent ``rotary_emb.inv_freq`` buffers older exports carry are ignored.

MinMo's backbone is LoRA-tuned; the importer expects the adapters already merged into the weights
(``PeftModel.merge_and_unload()`` then ``save_pretrained``): a folder with ``adapter_model.*`` is
refused rather than served without its adapters.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizerModel

from services.backbone import STAGE, Backbone, Qwen2Config
from services.backbone.tokenizer import AUDIO_BOS, AUDIO_EOS
from services.backbone.tokenizer_hf import REQUIRED_SPECIALS, TOKENIZER_FILE, HFTokenizer
from services.common.weights import WEIGHTS_FILE
from services.importers.errors import CheckpointError, check_keys
from services.importers.output import PROFILE, write_config
from services.importers.stream_writer import write_streamed

INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILES = (TOKENIZER_FILE, "tokenizer_config.json", "generation_config.json")
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


def qwen2_config_from_hf(hf: dict[str, Any], *, source: str, vocab: bool = True) -> Qwen2Config:
    """Our Qwen2Config from an HF Qwen2 ``config.json``; refuses model types whose math differs."""
    if hf.get("model_type") != "qwen2":
        raise CheckpointError(f"{source}: model_type is {hf.get('model_type')!r}, expected 'qwen2'")
    if hf.get("use_sliding_window"):
        raise CheckpointError(f"{source}: use_sliding_window is true; the backbone implements full attention only")
    if (hf.get("rope_scaling") or {}).get("type", (hf.get("rope_scaling") or {}).get("rope_type")) not in (
        None,
        "default",
    ):
        raise CheckpointError(f"{source}: rope_scaling {hf['rope_scaling']} is not supported (plain RoPE only)")
    try:
        return Qwen2Config(
            vocab_size=int(hf["vocab_size"]) if vocab else 0,
            hidden_size=int(hf["hidden_size"]),
            intermediate_size=int(hf["intermediate_size"]),
            num_hidden_layers=int(hf["num_hidden_layers"]),
            num_attention_heads=int(hf["num_attention_heads"]),
            num_key_value_heads=int(hf.get("num_key_value_heads", hf["num_attention_heads"])),
            rope_theta=float(hf.get("rope_theta", 10000.0)),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(hf.get("max_position_embeddings", 32768)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)) and vocab,
        )
    except KeyError as exc:
        raise CheckpointError(f"{source}: config field {exc.args[0]} is missing") from None
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def expected_shapes(module_factory: Any) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of a module built on the meta device (no memory for 7B weights)."""
    with torch.device("meta"):
        module = module_factory()
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def shard_map(source: Path) -> dict[str, Path]:
    """Tensor name -> shard file, from the index or the single ``model.safetensors``."""
    index = source / INDEX_FILE
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index} has no weight_map")
        files = {name: source / str(shard) for name, shard in weight_map.items()}
        absent = sorted({str(p.name) for p in files.values() if not p.is_file()})
        if absent:
            raise CheckpointError(f"{index} names shards that are missing: {', '.join(absent)}")
        return files
    single = source / WEIGHTS_FILE
    if single.is_file():
        with safe_open(str(single), framework="pt") as f:
            return dict.fromkeys(f.keys(), single)
    raise CheckpointError(f"{source} has neither {INDEX_FILE} nor {WEIGHTS_FILE}")


def _plan(files: dict[str, Path], keep: set[str]) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    plan: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}
    by_shard: dict[Path, list[str]] = {}
    for name in sorted(keep):
        by_shard.setdefault(files[name], []).append(name)
    for shard, names in by_shard.items():
        with safe_open(str(shard), framework="pt") as f:
            for name in names:
                sl = f.get_slice(name)
                plan[name] = (_torch_dtype(sl.get_dtype(), f"{shard.name}:{name}"), tuple(sl.get_shape()))
    return plan


def _torch_dtype(name: str, where: str) -> torch.dtype:
    dtypes = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    if name not in dtypes:
        raise CheckpointError(f"{where} has dtype {name}; expected a float tensor (quantised checkpoints unsupported)")
    return dtypes[name]


def _stream(files: dict[str, Path], order: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors in ``order``, opening each shard once (the plan groups names by shard)."""
    current: Path | None = None
    handle: Any = None
    try:
        for name in order:
            if files[name] != current:
                if handle is not None:
                    handle.__exit__(None, None, None)
                current = files[name]
                handle = safe_open(str(current), framework="pt")
                handle.__enter__()
            yield name, handle.get_tensor(name)
    finally:
        if handle is not None:
            handle.__exit__(None, None, None)


def import_tokenizer(source: Path, target: Path, vocab_size: int) -> HFTokenizer:
    """Copy the tokenizer files; add the audio markers MinMo's prompt needs when the tokenizer lacks them.

    Qwen2.5's tokenizer has no ``<|audio_bos|>`` / ``<|audio_eos|>``; they take the next free ids
    (151665, 151666 for Qwen2.5), which lie in the padded rows of the 152064-row embedding table
    that MinMo's tuning trains.
    """
    path = source / TOKENIZER_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the backbone needs the real tokenizer (tokenizer.json)")
    tok = HFTokenizerModel.from_file(str(path))
    present = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    core_absent = [n for n in REQUIRED_SPECIALS if n not in present and n not in (AUDIO_BOS, AUDIO_EOS)]
    if core_absent:
        raise CheckpointError(f"{path} lacks Qwen chat special tokens {', '.join(core_absent)}")
    for marker in (AUDIO_BOS, AUDIO_EOS):
        if marker not in present:
            tok.add_special_tokens([AddedToken(marker, special=True, normalized=False)])
    size = tok.get_vocab_size(with_added_tokens=True)
    if size > vocab_size:
        raise CheckpointError(
            f"{path} has {size} tokens (with the audio markers) but the embedding table has {vocab_size} rows"
        )
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES[1:]:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    tok.save(str(target / TOKENIZER_FILE))
    return HFTokenizer(target / TOKENIZER_FILE)


def import_qwen2(source: Path, out: Path) -> list[str]:
    """Write ``out/backbone``; returns report lines. Nothing is written if a key or shape is wrong."""
    if any(source.glob("adapter_model.*")):
        raise CheckpointError(f"{source} holds LoRA adapters: merge them into the base weights first")
    config = qwen2_config_from_hf(read_json(source / "config.json"), source=str(source / "config.json"))
    expected = expected_shapes(lambda: Backbone(config))
    files = shard_map(source)
    ignored = {n for n in files if n.endswith(_IGNORED_SUFFIXES)}
    if config.tie_word_embeddings and "lm_head.weight" in files:
        ignored.add("lm_head.weight")  # HF may save the tied copy; the table is model.embed_tokens
    keep = set(files) - ignored
    plan = _plan(files, keep & set(expected))
    got = {n: plan[n][1] if n in plan else (-1,) for n in keep}
    check_keys(expected, got, source=f"{source} (Hugging Face Qwen2 checkpoint)")
    target = out / STAGE
    target.mkdir(parents=True, exist_ok=True)
    tokenizer = import_tokenizer(source, target, config.vocab_size)
    order = sorted(plan, key=lambda n: (str(files[n]), n))
    write_streamed(
        target / WEIGHTS_FILE,
        {n: plan[n] for n in order},
        _stream(files, order),
        metadata={"stage": STAGE, "profile": PROFILE},
    )
    write_config(target, config, stage=STAGE, sources={"checkpoint": str(source.resolve())})
    shards = len(set(files.values()))
    return [
        f"backbone: {len(order)} tensors from {shards} shard(s), {config.num_hidden_layers} layers, "
        f"hidden {config.hidden_size} -> {target}",
        f"tokenizer: {tokenizer.vocab_size} tokens, <|im_end|> = {tokenizer.eos_id}, "
        f"audio markers {tokenizer.special_token_id(AUDIO_BOS)}/{tokenizer.special_token_id(AUDIO_EOS)}",
    ]
