"""Per-model time over one run: Triton's statistics API plus the models' own work counters.

Triton reports cumulative nanoseconds per model (queue, compute input/infer/output) and request
counts; the difference between two snapshots is what one run cost each model. For the decoupled
models Triton's compute time covers only ``execute()``, which hands the request to the model's step
scheduler, so the table also shows ``minmo_compute_seconds_total`` from Triton's metrics endpoint:
the time the model was busy (batched steps counted once), and from ``minmo_batch_size`` how many
streams each batched step served on average.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any

MODELS = ("encoder", "backbone", "duplex", "speech_lm", "vocoder")
_SAMPLE = re.compile(r'^(minmo_compute_(?:seconds|requests)_total)\{[^}]*model="([^"]+)"[^}]*\} (\S+)$', re.M)
_BATCH = re.compile(r'^minmo_batch_size_(count|sum)\{[^}]*model="([^"]+)"[^}]*\} (\S+)$', re.M)


@dataclass(frozen=True)
class Snapshot:
    triton: dict[str, dict[str, Any]]  # model -> Triton's model_stats entry
    work: dict[str, tuple[float, float]]  # model -> (seconds, requests) from the work counters
    batches: dict[str, tuple[float, float]] = field(default_factory=dict)  # model -> (steps, streams served)


@dataclass(frozen=True)
class ModelTime:
    model: str
    requests: int
    queue_ms: float
    execute_ms: float
    work_ms: float
    steps: int = 0  # batched kernel calls
    mean_batch: float = 0.0  # streams served per kernel call

    @property
    def work_ms_per_request(self) -> float:
        return self.work_ms / self.requests if self.requests else 0.0


def scrape_work(metrics_url: str) -> dict[str, tuple[float, float]]:
    """Per model: (busy seconds, requests) from ``minmo_compute_*_total``."""
    work: dict[str, list[float]] = {}
    for name, model, value in _SAMPLE.findall(_scrape(metrics_url)):
        index = 0 if name.endswith("seconds_total") else 1
        work.setdefault(model, [0.0, 0.0])[index] = float(value)
    return {model: (v[0], v[1]) for model, v in work.items()}


def scrape_batches(metrics_url: str) -> dict[str, tuple[float, float]]:
    """Per model: (batched steps, streams served) from the ``minmo_batch_size`` histogram."""
    batches: dict[str, list[float]] = {}
    for kind, model, value in _BATCH.findall(_scrape(metrics_url)):
        batches.setdefault(model, [0.0, 0.0])[0 if kind == "count" else 1] = float(value)
    return {model: (v[0], v[1]) for model, v in batches.items()}


def scrape(metrics_url: str) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    return scrape_work(metrics_url), scrape_batches(metrics_url)


def _scrape(metrics_url: str) -> str:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        return str(response.read().decode())


def _ns(stats: dict[str, Any], key: str) -> int:
    return int(stats.get("inference_stats", {}).get(key, {}).get("ns", 0))


def _count(stats: dict[str, Any]) -> int:
    return int(stats.get("inference_stats", {}).get("success", {}).get("count", 0))


def diff(model: str, before: Snapshot, after: Snapshot) -> ModelTime:
    b, a = before.triton[model], after.triton[model]
    execute = sum(_ns(a, k) - _ns(b, k) for k in ("compute_input", "compute_infer", "compute_output"))
    work_before = before.work.get(model, (0.0, 0.0))
    work_after = after.work.get(model, (0.0, 0.0))
    steps_before, served_before = before.batches.get(model, (0.0, 0.0))
    steps_after, served_after = after.batches.get(model, (0.0, 0.0))
    steps = int(steps_after - steps_before)
    return ModelTime(
        model=model,
        requests=_count(a) - _count(b),
        queue_ms=(_ns(a, "queue") - _ns(b, "queue")) / 1e6,
        execute_ms=execute / 1e6,
        work_ms=(work_after[0] - work_before[0]) * 1000,
        steps=steps,
        mean_batch=(served_after - served_before) / steps if steps else 0.0,
    )


def format_table(rows: list[ModelTime]) -> str:
    header = (
        f"{'model':10s} {'requests':>8s} {'queue ms':>9s} {'execute ms':>11s} {'work ms':>9s} {'work ms/req':>12s}"
        f" {'steps':>6s} {'streams/step':>12s}"
    )
    lines = [header]
    for row in rows:
        lines.append(
            f"{row.model:10s} {row.requests:8d} {row.queue_ms:9.1f} {row.execute_ms:11.1f} "
            f"{row.work_ms:9.1f} {row.work_ms_per_request:12.2f} {row.steps:6d} {row.mean_batch:12.2f}"
        )
    return "\n".join(lines)
