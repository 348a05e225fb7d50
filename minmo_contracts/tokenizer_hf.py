"""The real Qwen2.5 tokenizer (minmo profile) through the Hugging Face ``tokenizers`` library.

The backbone weights folder carries ``tokenizer.json`` when it was imported from a Hugging Face
checkpoint (``minmo models import qwen2``); :func:`load_tokenizer` then returns this tokenizer and
the smoke byte tokenizer otherwise, so serving code picks the right one from the folder alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

from tokenizers import Tokenizer as HFTokenizerModel

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

TOKENIZER_FILE = "tokenizer.json"
# What ChatPrompt and generation need; a tokenizer.json without one of them cannot serve MinMo.
REQUIRED_SPECIALS = (ENDOFTEXT, IM_START, IM_END, AUDIO_BOS, AUDIO_EOS)


class HFTokenizer(SpecialTokenLookup):
    """A ``tokenizer.json`` (byte-level BPE for Qwen2.5) behind the serving :class:`Tokenizer` Protocol."""

    def __init__(self, path: Path) -> None:
        self._tok = HFTokenizerModel.from_file(str(path))
        # Literal encoding: "<|im_end|>" typed by a user is text, never the control token.
        self._tok.encode_special_tokens = True
        specials = {t.content: i for i, t in self._tok.get_added_tokens_decoder().items() if t.special}
        absent = [name for name in REQUIRED_SPECIALS if name not in specials]
        if absent:
            raise ValueError(
                f"{path} lacks special tokens {', '.join(absent)}: re-import the checkpoint with "
                "`minmo models import qwen2`, which adds the audio markers"
            )
        self._specials = MappingProxyType(specials)
        self._vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Decode, skipping special tokens and ids past the tokenizer (the embedding table's padding rows).

        Qwen2.5's table has 152064 rows for ~151.7k tokens; a sampled padding row has no text.
        """
        negative = [i for i in ids if i < 0]
        if negative:
            raise ValueError(f"token id {negative[0]} is negative")
        return self._tok.decode([i for i in ids if i < self._vocab_size], skip_special_tokens=True)


def load_tokenizer(backbone_dir: Path | None) -> Tokenizer:
    """The tokenizer that belongs to a backbone weights folder: HF when it has ``tokenizer.json``, else smoke."""
    if backbone_dir is not None and (backbone_dir / TOKENIZER_FILE).is_file():
        return HFTokenizer(backbone_dir / TOKENIZER_FILE)
    return SmokeByteTokenizer()
