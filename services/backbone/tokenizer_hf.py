"""The real Qwen2.5 tokenizer (``tokenizer.json``): re-exported from ``minmo_contracts.tokenizer_hf``."""

from __future__ import annotations

from minmo_contracts.tokenizer_hf import REQUIRED_SPECIALS, TOKENIZER_FILE, HFTokenizer, load_tokenizer

__all__ = ["REQUIRED_SPECIALS", "TOKENIZER_FILE", "HFTokenizer", "load_tokenizer"]
