"""How text becomes speech on the speak path and in Synthesize: one set of grouping constants for both.

The speech LM reads its input in groups of ``text_per_group`` text positions and answers each with
``tokens_per_group`` speech tokens (600 ms of audio); after the last text it runs to end-of-speech,
which ``max_tail_tokens`` bounds. The model's own interleave is the contract's
(:data:`minmo_contracts.speech_lm.TEXT_PER_GROUP` : :data:`~minmo_contracts.speech_lm.TOKENS_PER_GROUP`).
"""

from __future__ import annotations

from dataclasses import dataclass

from minmo_contracts.speech_lm import TEXT_PER_GROUP, TOKENS_PER_GROUP


@dataclass(frozen=True)
class SpeechGrouping:
    text_per_group: int = TEXT_PER_GROUP
    tokens_per_group: int = TOKENS_PER_GROUP
    # After the last text speech_lm runs until end-of-speech; this bounds a model that never stops.
    max_tail_tokens: int = 60
