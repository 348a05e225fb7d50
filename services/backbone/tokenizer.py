"""The backbone's tokenizers: the protocol, the smoke byte tokenizer and the special tokens.

They are a contract the orchestrator shares (it encodes prompts and decodes replies), so they live in
``minmo_contracts.tokenizer``, torch-free; this module re-exports them for the models' side.
"""

from __future__ import annotations

from minmo_contracts.tokenizer import (
    AUDIO_BOS,
    AUDIO_EOS,
    ENDOFTEXT,
    IM_END,
    IM_START,
    SmokeByteTokenizer,
    SpecialTokenLookup,
    Tokenizer,
)

__all__ = [
    "AUDIO_BOS",
    "AUDIO_EOS",
    "ENDOFTEXT",
    "IM_END",
    "IM_START",
    "SmokeByteTokenizer",
    "SpecialTokenLookup",
    "Tokenizer",
]
