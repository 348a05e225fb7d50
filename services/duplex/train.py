"""Train the smoke duplex predictor on synthetic dialogues and evaluate it on held-out ones.

    python -m services.duplex.train --out services/duplex/checkpoints/smoke

Reproducible: dialogues, initialisation and batch order are seeded (``DUPLEX_SEED``) and training
runs on the CPU with a fixed thread count. Features come from the seeded smoke encoder and
backbone (see :mod:`services.duplex.features`); their fingerprint goes into the
checkpoint config so that a checkpoint trained on other encoder/backbone weights is refused at load.
Synthesised speech and features are cached under ``--cache-dir`` (default:
:func:`services.duplex.synth.default_cache_dir`).

Data: dialogues of short turns and barge-ins, plus monologues (long turns whose clauses are joined
by 0.2-0.4 s pauses); held out: both kinds with sentences, voices and seeds training never saw,
scored apart (``heldout``, ``heldout_monologues``). ``--respond-after-ms`` sets the end-of-turn
silence the labels wait for (600 ms; ``python -m perf.turn_taking`` compares 400 and 200).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from services.common.seeding import seeded
from services.common.settings_flags import add_settings_flags, settings_from_args, trainer_parser, write_run_metrics
from services.duplex.config import DuplexConfig
from services.duplex.dialogues import Dialogue, make_dialogues, make_monologues
from services.duplex.evaluate import evaluate
from services.duplex.features import FeatureExtractor, smoke_extractor
from services.duplex.model import NUM_CLASSES, DuplexPredictor
from services.duplex.policy import DecisionPolicy
from services.duplex.synth import default_cache_dir
from services.smoke_seeds import DUPLEX_SEED

# Bump when dialogue generation, labelling or the feature layout changes, so cached features are not reused.
DATA_VERSION = 4
METRICS_FILE = "metrics.json"


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    train_dialogues: int = 320
    train_monologues: int = 160
    heldout_dialogues: int = 80
    heldout_monologues: int = 40
    respond_after_ms: int = 600  # end-of-turn silence of the RESPOND_NOW labels
    epochs: int = 40
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.01
    seed: int = DUPLEX_SEED


def dialogue_sets(settings: TrainSettings, cache_dir: Path) -> dict[str, list[Dialogue]]:
    """Training and held-out dialogues (disjoint sentences, voices and seeds), by set name."""
    seed = settings.seed
    train = make_dialogues(settings.train_dialogues, "train", seed, cache_dir)
    return {
        "train": train + make_monologues(settings.train_monologues, "train", seed + 2, cache_dir),
        "heldout": make_dialogues(settings.heldout_dialogues, "heldout", seed + 1, cache_dir),
        "heldout_monologues": make_monologues(settings.heldout_monologues, "heldout", seed + 3, cache_dir),
    }


def extract(
    extractor: FeatureExtractor, dialogues: list[Dialogue], tag: str, cache_dir: Path | None
) -> list[torch.Tensor]:
    """Features of every dialogue, cached per (weights fingerprint, data version, dialogue set)."""
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256(
            f"{extractor.fingerprint}|{DATA_VERSION}|{tag}|{len(dialogues)}".encode()
            + b"".join(d.audio.tobytes()[:4096] + d.speaking.tobytes() + repr(d.history).encode() for d in dialogues)
        ).hexdigest()[:24]
        path = cache_dir / "features" / f"{tag}-{digest}.pt"
        if path.is_file():
            return list(torch.load(path))
    features = [extractor.dialogue(d) for d in dialogues]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(features, path)
    return features


def class_weights(labels: list[np.ndarray]) -> torch.Tensor:
    """Inverse square-root class frequency: rare decisions matter more, without drowning KEEP."""
    counts = np.bincount(np.concatenate(labels), minlength=NUM_CLASSES).astype(np.float64)
    weights = (counts.sum() / np.maximum(counts, 1)) ** 0.5
    return torch.tensor(weights / weights[0], dtype=torch.float32)


def _batch(
    features: list[torch.Tensor], dialogues: list[Dialogue], index: list[int], respond_after: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    length = max(dialogues[i].n_frames for i in index)
    hidden = torch.zeros(len(index), length, features[0].shape[1])
    speaking = torch.zeros(len(index), length, dtype=torch.bool)
    labels = torch.full((len(index), length), -100, dtype=torch.long)  # padding is ignored by the loss
    for row, i in enumerate(index):
        n = dialogues[i].n_frames
        hidden[row, :n] = features[i]
        speaking[row, :n] = torch.from_numpy(dialogues[i].speaking)
        labels[row, :n] = torch.from_numpy(dialogues[i].labels(respond_after))
    return hidden, speaking, labels


def train_model(
    config: DuplexConfig, dialogues: list[Dialogue], features: list[torch.Tensor], settings: TrainSettings
) -> tuple[DuplexPredictor, list[float]]:
    """Class-weighted cross-entropy, AdamW with cosine decay; returns the model and per-epoch losses."""
    with seeded(settings.seed):
        model = DuplexPredictor(config)
    respond_after = settings.respond_after_ms / 1000
    weights = class_weights([d.labels(respond_after) for d in dialogues])
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(dialogues) / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    order = torch.Generator().manual_seed(settings.seed)
    losses = []
    model.train()
    with seeded(settings.seed):  # dropout masks
        for _ in range(settings.epochs):
            permutation = torch.randperm(len(dialogues), generator=order).tolist()
            epoch_loss = 0.0
            for start in range(0, len(dialogues), settings.batch_size):
                index = permutation[start : start + settings.batch_size]
                hidden, speaking, labels = _batch(features, dialogues, index, respond_after)
                logits = model(hidden, speaking)
                loss = F.cross_entropy(logits.reshape(-1, NUM_CLASSES), labels.reshape(-1), weight=weights)
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimiser.step()
                schedule.step()
                epoch_loss += loss.item()
            losses.append(epoch_loss / steps_per_epoch)
    return model.eval(), losses


def run(
    out: Path, settings: TrainSettings, cache_dir: Path, threads: int, *, cache_features: bool = True
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    extractor = smoke_extractor()
    sets = dialogue_sets(settings, cache_dir)
    feature_cache = cache_dir if cache_features else None
    features = {name: extract(extractor, dialogues, name, feature_cache) for name, dialogues in sets.items()}
    data_seconds = time.perf_counter() - started

    config = dataclasses.replace(DuplexConfig.preset("smoke"), feature_fingerprint=extractor.fingerprint)
    model, losses = train_model(config, sets["train"], features["train"], settings)
    train_seconds = time.perf_counter() - started - data_seconds

    from services.duplex import save  # the package imports this module's siblings only

    save(model, out, "smoke")
    policy = DecisionPolicy()
    respond_after = settings.respond_after_ms / 1000
    metrics: dict[str, Any] = {
        name: evaluate(model, sets[name], features[name], policy, respond_after=respond_after)
        for name in ("heldout", "heldout_monologues", "train")
    }
    metrics.update(
        {
            "policy": dataclasses.asdict(policy),
            "settings": dataclasses.asdict(settings),
            "data_version": DATA_VERSION,
            "feature_fingerprint": extractor.fingerprint,
            "epoch_losses": [round(x, 5) for x in losses],
        }
    )
    write_run_metrics(
        out / METRICS_FILE, metrics, data_seconds=data_seconds, train_seconds=train_seconds, threads=threads
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = trainer_parser(__doc__, cache_dir=default_cache_dir(), cache_help="speech and feature cache", threads=1)
    parser.add_argument("--no-cache", action="store_true", help="recompute features (speech clips are still cached)")
    add_settings_flags(parser, TrainSettings)
    args = parser.parse_args(argv)
    settings = settings_from_args(TrainSettings, args)
    metrics = run(args.out, settings, args.cache_dir, args.threads, cache_features=not args.no_cache)
    for split in ("heldout", "heldout_monologues", "train"):
        m = metrics[split]
        for kind in ("end_of_turn", "barge_in"):
            k = m[kind]
            print(
                f"{split:18s} {kind:12s} events={k['events']:4d} precision={k['precision']} recall={k['recall']} "
                f"premature={k['premature']} mean_delay_ms={k['mean_delay_ms']} p90_delay_ms={k['p90_delay_ms']}"
            )
    print(f"data {metrics['data_seconds']} s, training {metrics['train_seconds']} s; wrote {args.out}")


if __name__ == "__main__":
    main()
