"""Fixtures shared by all tiers: where the smoke weights are, building them once if missing."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE_WEIGHTS = REPO_ROOT / "weights" / "smoke"


@pytest.fixture(scope="session")
def smoke_weights() -> Path:
    """The smoke weights folder; `make test` builds it first, a bare pytest run builds it here."""
    if not (SMOKE_WEIGHTS / "vocoder" / "config.json").is_file():
        from services.build_weights import build_smoke_weights

        build_smoke_weights(SMOKE_WEIGHTS)
    return SMOKE_WEIGHTS
