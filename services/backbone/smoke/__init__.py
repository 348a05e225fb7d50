"""The trained smoke backbone: the seeded one taught to answer the questions of :mod:`.qa` (see :mod:`.train`)."""

from __future__ import annotations

from pathlib import Path

from services.backbone import Backbone, load

SMOKE_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "smoke"


def load_trained() -> Backbone:
    """The shipped trained smoke backbone (retrain: ``python -m services.backbone.smoke.train --out ...``)."""
    return load(SMOKE_CHECKPOINT).eval()
