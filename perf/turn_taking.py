"""The turn-taking trade-off of the duplex predictor, measured on held-out dialogues and monologues.

    python -m perf.turn_taking --out out/perf/turn_taking

Trains the smoke duplex predictor with end-of-turn labels that wait 600, 400 and 200 ms of silence
(``services.duplex.train``'s data and settings otherwise; models cached under ``--out``/models),
scores each over respond thresholds on the held-out dialogues (short turns, barge-ins, coughs) and
monologues (clauses joined by 0.2-0.4 s pauses): end-of-turn delay against premature responses.
Picks the default by :class:`perf.turn_taking_sweep.DefaultRule`, then measures speculation on the
chosen predictor: the runtime's end-point rule (``orchestrator.converse.speculation``: a silence
after the user's last voice, or a respond-now probability over a lower threshold) over a grid of
both, the lead over the decision and the speculative starts that would be discarded. Writes ``turn_taking.json``,
``turn_taking.md``, ``tradeoff.png`` and ``speculation.png``. About 8-10 minutes on 2 cores, less
with the feature cache of an earlier run or of ``services.duplex.train``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from perf.turn_taking_report import plot_speculation, plot_tradeoff, point_key, speculation_table, tradeoff_table
from perf.turn_taking_sweep import DefaultRule, Run, pick_default, policy_point, speculation_point
from services import duplex
from services.duplex.config import DuplexConfig
from services.duplex.evaluate import predict
from services.duplex.features import smoke_extractor
from services.duplex.synth import default_cache_dir
from services.duplex.train import TrainSettings, dialogue_sets, extract, train_model

LABELS_MS = (600, 400, 200)
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FLOORS_MS = (0, 360, 480)  # respond only after this much silence since the user's last voice
SILENCES_MS = (120, 240, 360, 480)  # speculation end points: silence after the user's last voice
STARTS = (0.1, 0.2, 0.3)  # ... or a respond-now probability over this


def trained(
    settings: TrainSettings, features: dict[str, list[torch.Tensor]], sets: dict[str, Any], fingerprint: str, out: Path
) -> duplex.DuplexPredictor:
    """The predictor for ``settings`` (from ``out`` when an earlier run trained it on the same features)."""
    stamp = out / "settings.json"
    wanted = json.dumps({"settings": dataclasses.asdict(settings), "fingerprint": fingerprint}, sort_keys=True)
    if stamp.is_file() and stamp.read_text() == wanted:
        return duplex.load(out, expected_fingerprint=fingerprint)
    config = dataclasses.replace(DuplexConfig.preset("smoke"), feature_fingerprint=fingerprint)
    model, _losses = train_model(config, sets["train"], features["train"], settings)
    duplex.save(model, out, "smoke")
    stamp.write_text(wanted)
    return model


def measure(out: Path, cache_dir: Path, labels: tuple[int, ...], threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    extractor = smoke_extractor()
    base = TrainSettings()
    sets = dialogue_sets(base, cache_dir)
    features = {name: extract(extractor, dialogues, name, cache_dir) for name, dialogues in sets.items()}
    heldout = [*sets["heldout"], *sets["heldout_monologues"]]
    heldout_features = [*features["heldout"], *features["heldout_monologues"]]
    monologue = [False] * len(sets["heldout"]) + [True] * len(sets["heldout_monologues"])

    runs = {}
    for ms in labels:
        settings = dataclasses.replace(base, respond_after_ms=ms)
        model = trained(settings, features, sets, extractor.fingerprint, out / "models" / f"respond_after_{ms}")
        probs = [predict(model, f, d.speaking) for d, f in zip(heldout, heldout_features, strict=True)]
        runs[ms] = Run(ms, heldout, probs, monologue)

    points = [
        policy_point(runs[ms], threshold, floor) for ms in labels for floor in FLOORS_MS for threshold in THRESHOLDS
    ]
    rule = DefaultRule()
    baseline, chosen = pick_default(points, rule)
    chosen_run = runs[chosen["respond_after_ms"]]
    speculation = [
        speculation_point(chosen_run, chosen["threshold"], silence, start, min_silence_ms=chosen["min_silence_ms"])
        for start in STARTS
        if start < chosen["threshold"]
        for silence in SILENCES_MS
    ]
    return {
        "points": points,
        "rule": rule.text(),
        "baseline": baseline,
        "chosen": chosen,
        "speculation": speculation,
        "heldout": {
            "dialogues": len(sets["heldout"]),
            "monologues": len(sets["heldout_monologues"]),
            "seconds": round(sum(d.n_frames for d in heldout) * 0.12, 1),
        },
        "train_settings": dataclasses.asdict(base),
        "feature_fingerprint": extractor.fingerprint,
        "seconds": round(time.perf_counter() - started, 1),
        "threads": threads,
    }


def report(result: dict[str, Any]) -> str:
    base, chosen = result["baseline"], result["chosen"]
    marks = {point_key(base): " (today)"}
    marks[point_key(chosen)] = marks.get(point_key(chosen), "") + " **(chosen)**"
    h = result["heldout"]
    premature = 100 * chosen["all"]["premature_per_turn"], 100 * base["all"]["premature_per_turn"]
    parts = [
        "# Turn-taking trade-off (smoke duplex predictor, held-out)",
        "",
        f"{h['dialogues']} dialogues + {h['monologues']} monologues, {h['seconds'] / 60:.1f} min of held-out audio.",
        "",
        tradeoff_table(result["points"], marks),
        "",
        f"Rule: {result['rule']}.",
        f"Chosen: {chosen['respond_after_ms']} ms labels, threshold {chosen['threshold']}, silence floor "
        f"{chosen['min_silence_ms']} ms: mean delay "
        f"{chosen['all']['mean_delay_ms']:.0f} ms (today {base['all']['mean_delay_ms']:.0f} ms), premature "
        f"{premature[0]:.1f} per 100 turns (today {premature[1]:.1f}).",
        "",
        f"## Speculation on the chosen predictor (decision threshold {chosen['threshold']}, floor "
        f"{chosen['min_silence_ms']} ms)",
        "",
        speculation_table(result["speculation"]),
        "",
    ]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/perf/turn_taking"))
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="speech and feature cache")
    parser.add_argument("--labels", default=",".join(str(x) for x in LABELS_MS), help="label silences in ms")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (training is pinned to it)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    labels = tuple(int(x) for x in args.labels.split(","))
    if 600 not in labels:
        parser.error("--labels must include 600 (today's labels, the baseline)")
    result = measure(args.out, args.cache_dir, labels, args.threads)
    (args.out / "turn_taking.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (args.out / "turn_taking.md").write_text(text)
    plot_tradeoff(result["points"], result["baseline"], result["chosen"], args.out)
    if result["speculation"]:
        plot_speculation(result["speculation"], args.out)
    print(text)
    print(f"wrote {args.out} in {result['seconds']} s")


if __name__ == "__main__":
    main()
