"""Per-model time from Triton's own statistics API, as a difference over one run.

Triton reports cumulative nanoseconds per model (queue, compute input/infer/output) and request
counts; the difference between two snapshots is what one run cost each model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MODELS = ("encoder", "backbone", "duplex", "speech_lm", "vocoder")


@dataclass(frozen=True)
class ModelTime:
    model: str
    requests: int
    queue_ms: float
    compute_ms: float

    @property
    def compute_ms_per_request(self) -> float:
        return self.compute_ms / self.requests if self.requests else 0.0


def _ns(stats: dict[str, Any], key: str) -> int:
    return int(stats.get("inference_stats", {}).get(key, {}).get("ns", 0))


def _count(stats: dict[str, Any]) -> int:
    return int(stats.get("inference_stats", {}).get("success", {}).get("count", 0))


def diff(model: str, before: dict[str, Any], after: dict[str, Any]) -> ModelTime:
    compute_keys = ("compute_input", "compute_infer", "compute_output")
    compute = sum(_ns(after, k) - _ns(before, k) for k in compute_keys)
    return ModelTime(
        model=model,
        requests=_count(after) - _count(before),
        queue_ms=(_ns(after, "queue") - _ns(before, "queue")) / 1e6,
        compute_ms=compute / 1e6,
    )


def format_table(rows: list[ModelTime]) -> str:
    lines = [f"{'model':10s} {'requests':>8s} {'queue ms':>9s} {'compute ms':>11s} {'ms/request':>11s}"]
    for row in rows:
        lines.append(
            f"{row.model:10s} {row.requests:8d} {row.queue_ms:9.1f} {row.compute_ms:11.1f} "
            f"{row.compute_ms_per_request:11.2f}"
        )
    return "\n".join(lines)
