"""Per-stream state of a Triton model, keyed by the sequence batcher's correlation id.

Triton's sequence batcher keeps every request of a stream on one model instance and tells us, via
the START and END control inputs, when a stream begins and ends. The state itself lives in a bounded
:class:`StreamStateStore`, and an ``minmo_open_streams`` gauge shows how many are held, so a leak is
visible on Triton's own ``/metrics``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from services.common.stream_state import StreamStateStore
from services.triton.metrics import METRICS_LOCK
from services.triton.params import ModelParameters
from services.triton.requests import SequenceFlags

StateT = TypeVar("StateT")


class StreamRegistry(Generic[StateT]):
    def __init__(self, params: ModelParameters) -> None:
        import triton_python_backend_utils as pb_utils

        self.model_name = params.model_name
        self._store: StreamStateStore[StateT] = StreamStateStore(
            max_streams=params.get_int("max_streams", 64),
            idle_seconds=params.get_float("stream_idle_seconds", 600.0),
        )
        # The family must outlive its metric: Triton refuses updates once the family is collected.
        self._family = pb_utils.MetricFamily(
            name="minmo_open_streams",
            description="Per-stream states (KV caches, overlap caches) a MinMo model holds",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self._gauge = self._family.Metric(labels={"model": params.model_name})
        # Idle streams must be freed even when no request arrives to notice them.
        idle = params.get_float("stream_idle_seconds", 600.0)
        self._stop = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep, args=(min(idle / 2, 30.0),), name=f"{params.model_name}-sweeper", daemon=True
        )
        self._sweeper.start()

    def _sweep(self, period: float) -> None:
        while not self._stop.wait(period):
            self._refresh_gauge()

    def shutdown(self) -> None:
        self._stop.set()

    def open_or_get(self, flags: SequenceFlags, create: Callable[[], StateT]) -> StateT:
        """A START request (re)creates the stream's state; any other request must find it."""
        if flags.start:
            state = create()
            self._store.put(str(flags.stream_id), state)
        else:
            state = self._store.get(str(flags.stream_id))
        self._refresh_gauge()
        return state

    def get(self, stream_id: int) -> StateT:
        return self._store.get(str(stream_id))

    def close(self, stream_id: int) -> bool:
        closed = self._store.close(str(stream_id))
        self._refresh_gauge()
        return closed

    def __len__(self) -> int:
        return len(self._store)

    def _refresh_gauge(self) -> None:
        self._store.expire_idle()
        with METRICS_LOCK:
            self._gauge.set(len(self._store))
