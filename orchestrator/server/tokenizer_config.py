"""``--tokenizer DIR``: the real tokenizer, loaded once per process and shared by every session and task.

Unlike ``services.backbone.tokenizer_hf.load_tokenizer`` (which falls back to the smoke tokenizer for a
folder without ``tokenizer.json``), a folder named on the command line must hold one: serving the real
weights with byte ids would answer with garbage instead of failing at start.
"""

from __future__ import annotations

from pathlib import Path

from minmo_contracts.tokenizer import Tokenizer
from minmo_contracts.tokenizer_hf import TOKENIZER_FILE, load_tokenizer


class TokenizerConfigError(ValueError):
    """``--tokenizer`` names no usable tokenizer; the message says what to fix."""


def load_serving_tokenizer(directory: Path | None) -> Tokenizer | None:
    """The tokenizer of ``directory`` (None without the flag: the handlers use the smoke byte tokenizer)."""
    if directory is None:
        return None
    if not (directory / TOKENIZER_FILE).is_file():
        raise TokenizerConfigError(
            f"--tokenizer {directory}: no {TOKENIZER_FILE} there; point it at the backbone weights folder "
            "that `minmo models import qwen2` wrote"
        )
    try:
        return load_tokenizer(directory)
    # ValueError: a tokenizer without MinMo's specials; the tokenizers library raises a bare Exception
    # for a file that is not a tokenizer.json.
    except Exception as exc:
        raise TokenizerConfigError(f"--tokenizer {directory}: {exc}") from exc
