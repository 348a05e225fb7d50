"""Per-model work time on Triton's ``/metrics``, beside Triton's own statistics.

Triton's statistics time ``execute()``. A decoupled model's ``execute()`` only hands each request
to a worker thread and returns, so there they show microseconds whatever the model costs. These
counters time the work itself, from the first tensor read to the FINAL flag, for every model alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Metric updates travel from the stub to the server over the same IPC channel as responses; the
# Python backend does not promise that concurrent updates from several threads are safe, and a
# model here updates from its worker threads and its idle sweeper. One lock serialises them.
METRICS_LOCK = threading.Lock()

COMPUTE_SECONDS = "minmo_compute_seconds_total"
COMPUTE_REQUESTS = "minmo_compute_requests_total"


class ComputeMeter:
    def __init__(self, model_name: str) -> None:
        import triton_python_backend_utils as pb_utils

        labels = {"model": model_name}
        # Families must outlive their metrics: Triton refuses updates once a family is collected.
        self._seconds_family = pb_utils.MetricFamily(
            name=COMPUTE_SECONDS,
            description="Seconds a MinMo model spent serving requests (first input read to FINAL)",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self._requests_family = pb_utils.MetricFamily(
            name=COMPUTE_REQUESTS,
            description="Requests a MinMo model served, successful or not",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self._seconds = self._seconds_family.Metric(labels=labels)
        self._requests = self._requests_family.Metric(labels=labels)

    @contextmanager
    def measure(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            with METRICS_LOCK:
                self._seconds.increment(time.perf_counter() - started)
                self._requests.increment(1)
