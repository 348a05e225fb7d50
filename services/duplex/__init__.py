"""Full-duplex predictor stage: per 120 ms frame, keep listening, respond now, or stop speaking."""

from __future__ import annotations

from pathlib import Path

from services.common.seeding import seeded
from services.common.weights import WeightsError, load_stage_tensors, load_state_strict, read_stage_config, save_stage
from services.duplex.batch import DuplexWork, score_batch
from services.duplex.config import DuplexConfig
from services.duplex.fingerprint import weights_fingerprint
from services.duplex.model import Decision, DuplexPredictor, DuplexStream
from services.duplex.policy import DecisionGate, DecisionPolicy

STAGE = "duplex"
# The trained smoke checkpoint shipped in the package (``python -m services.duplex.train`` rebuilds it).
SMOKE_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "smoke"

__all__ = [
    "SMOKE_CHECKPOINT",
    "Decision",
    "DecisionGate",
    "DecisionPolicy",
    "DuplexConfig",
    "DuplexPredictor",
    "DuplexStream",
    "DuplexWork",
    "build_smoke",
    "check_fingerprint",
    "load",
    "save",
    "score_batch",
    "weights_fingerprint",
]


def build_smoke(seed: int) -> DuplexPredictor:
    """An untrained seeded smoke predictor (for shape tests); the trained one is ``load(SMOKE_CHECKPOINT)``."""
    with seeded(seed):
        model = DuplexPredictor(DuplexConfig.preset("smoke"))
    return model.eval()


def save(module: DuplexPredictor, directory: Path, profile: str) -> None:
    save_stage(directory, module, module.config, stage=STAGE, profile=profile)


def load(directory: Path, *, expected_fingerprint: str | None = None) -> DuplexPredictor:
    """Rebuild a saved predictor (eval mode); with ``expected_fingerprint``, refuse a stale one.

    The fingerprint is :func:`weights_fingerprint` ``(encoder, backbone)`` of the stages the
    deployment serves; a predictor trained on other weights would read features it never saw.
    """
    config_dict, _profile = read_stage_config(directory, stage=STAGE)
    config = DuplexConfig.from_dict(config_dict)
    if expected_fingerprint is not None:
        check_fingerprint(config, expected_fingerprint, source=str(directory))
    model = DuplexPredictor(config)
    load_state_strict(model, load_stage_tensors(directory), source=str(directory))
    return model.eval()


def check_fingerprint(config: DuplexConfig, expected: str, *, source: str) -> None:
    if config.feature_fingerprint != expected:
        raise WeightsError(
            f"{source} was trained on encoder/backbone weights with fingerprint "
            f"{config.feature_fingerprint[:16] or '(none)'}..., but these have {expected[:16]}...: "
            "retrain it with `python -m services.duplex.train --out services/duplex/checkpoints/smoke`"
        )
