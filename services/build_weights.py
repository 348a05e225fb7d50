"""Build the seeded smoke weights of all five stages: ``python -m services.build_weights --out weights/smoke``.

The encoder, speech LM and vocoder are seeded random initialisations (their audio is babble). The
backbone and the duplex predictor are shipped *trained* checkpoints: the backbone
(``services/backbone/checkpoints/smoke``) answers the demo's questions with short sentences, so a
newcomer reads a conversation; the predictor (``services/duplex/checkpoints/smoke``) was trained on
hidden states of exactly this encoder and backbone, and the build refuses to pair it with any others.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from services import backbone, duplex, encoder, speech_lm, vocoder
from services.backbone.smoke import load_trained
from services.common.weights import WeightsError
from services.smoke_seeds import ENCODER_SEED, SPEECH_LM_SEED, VOCODER_SEED

STAGES = ("encoder", "backbone", "duplex", "speech_lm", "vocoder")


def build_smoke_weights(out: Path) -> dict[str, float]:
    """Write ``out/<stage>/{model.safetensors,config.json}``; return build seconds per stage."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    enc = encoder.build_smoke(ENCODER_SEED)
    encoder.save(enc, out / "encoder", profile="smoke")
    seconds["encoder"] = time.perf_counter() - started

    started = time.perf_counter()
    llm = load_trained()
    backbone.save(llm, out / "backbone", profile="smoke")
    seconds["backbone"] = time.perf_counter() - started

    started = time.perf_counter()
    # Refuses a checkpoint trained on other encoder/backbone weights, naming the retrain command.
    duplex.load(duplex.SMOKE_CHECKPOINT, expected_fingerprint=duplex.weights_fingerprint(enc, llm))
    target = out / "duplex"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json", "metrics.json"):
        source = duplex.SMOKE_CHECKPOINT / name
        if source.exists():
            shutil.copy2(source, target / name)
    seconds["duplex"] = time.perf_counter() - started

    started = time.perf_counter()
    speech_lm.save(speech_lm.build_smoke(SPEECH_LM_SEED), out / "speech_lm", profile="smoke")
    seconds["speech_lm"] = time.perf_counter() - started

    started = time.perf_counter()
    vocoder.save(vocoder.build_smoke(VOCODER_SEED), out / "vocoder", profile="smoke")
    seconds["vocoder"] = time.perf_counter() - started
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("weights/smoke"))
    args = parser.parse_args(argv)
    try:
        seconds = build_smoke_weights(args.out)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for stage, took in seconds.items():
        print(f"{stage:10s} {took * 1000:8.0f} ms  -> {args.out / stage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
