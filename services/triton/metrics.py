"""Per-model work time and batch sizes on Triton's ``/metrics``, beside Triton's own statistics.

Triton's statistics time ``execute()``. A decoupled model's ``execute()`` only queues each request
for the scheduler thread and returns, so there they show microseconds whatever the model costs.
These counters time the work itself, for every model alike: the seconds the model was busy (a unary
batch's ``execute()``, a decoupled model's scheduler steps) and the requests it finished, so
seconds / requests is the model's cost per request with batching counted in. ``minmo_batch_size``
is a histogram of how many streams each batched kernel call served.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from services.triton.batching import BatchObserver

# Metric updates travel from the stub to the server over the same IPC channel as responses; the
# Python backend does not promise that concurrent updates from several threads are safe, and a
# model here updates from Triton's execute() thread, its scheduler (or worker) threads and its idle
# sweeper. One lock serialises them.
METRICS_LOCK = threading.Lock()

COMPUTE_SECONDS = "minmo_compute_seconds_total"
COMPUTE_REQUESTS = "minmo_compute_requests_total"
BATCH_SIZE = "minmo_batch_size"
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


class ComputeMeter:
    def __init__(self, model_name: str) -> None:
        import triton_python_backend_utils as pb_utils

        labels = {"model": model_name}
        # Families must outlive their metrics: Triton refuses updates once a family is collected.
        self._seconds_family = pb_utils.MetricFamily(
            name=COMPUTE_SECONDS,
            description="Seconds a MinMo model was busy serving requests (batched steps counted once)",
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
    def measure(self, requests: int = 0) -> Iterator[None]:
        """Time the block as busy time; ``requests`` finished in it are counted too."""
        started = time.perf_counter()
        try:
            yield
        finally:
            with METRICS_LOCK:
                self._seconds.increment(time.perf_counter() - started)
                if requests:
                    self._requests.increment(requests)

    def count(self, requests: int) -> None:
        with METRICS_LOCK:
            self._requests.increment(requests)


class BatchMetrics(BatchObserver):
    """``minmo_batch_size{model=...}``: streams per kernel call, as a Prometheus histogram."""

    def __init__(self, model_name: str) -> None:
        import triton_python_backend_utils as pb_utils

        self._family = pb_utils.MetricFamily(
            name=BATCH_SIZE,
            description="Streams served by one batched step of a MinMo model",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        self._histogram = self._family.Metric(labels={"model": model_name}, buckets=list(BATCH_BUCKETS))

    def observe(self, size: int, seconds: float) -> None:
        with METRICS_LOCK:
            self._histogram.observe(float(size))
