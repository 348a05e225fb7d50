"""Per-stream state of a Triton model, keyed by the sequence batcher's correlation id.

Triton's sequence batcher keeps every request of a stream on one model instance and tells us, via
the START and END control inputs, when a stream begins and ends. The state itself lives in a bounded
:class:`StreamStateStore`, and an ``minmo_open_streams`` gauge shows how many are held, so a leak is
visible on Triton's own ``/metrics``. At ``max_streams`` a new stream is refused, never made room for
by evicting another session's state.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from services.common.stream_state import StreamStateStore
from services.triton.metrics import METRICS_LOCK
from services.triton.params import ModelParameters
from services.triton.requests import SequenceFlags

StateT = TypeVar("StateT")


# Share of the sequence batcher's slots the model's own bound may use. Triton holds a slot per sequence from
# its START to its END or idle timeout, refused STARTs included; past the last slot it queues new sequences
# silently (the caller sees its deadline, not an answer). Refusing below the batcher's bound, with room
# for refused sequences that still hold a slot, keeps "at capacity" an answer.
BATCHER_SHARE = 0.75


def sequence_slots(args: dict[str, Any]) -> int | None:
    """``max_candidate_sequences`` of the model's Oldest sequence batcher (None: no such bound)."""
    config = json.loads(args.get("model_config", "{}"))
    oldest = (config.get("sequence_batching") or {}).get("oldest") or {}
    slots = int(oldest.get("max_candidate_sequences", 0) or 0)
    return slots or None


def stream_bound(max_streams: int, slots: int | None) -> int:
    """The streams a model may hold: ``max_streams``, and below the batcher's slots (``BATCHER_SHARE``)."""
    if slots is None:
        return max_streams
    return max(1, min(max_streams, int(slots * BATCHER_SHARE)))


class StreamRegistry(Generic[StateT]):
    def __init__(self, params: ModelParameters, *, sequence_slots: int | None = None) -> None:
        """``sequence_slots``: the sequence batcher's bound (``sequence_slots(args)``), which the model stays under."""
        import triton_python_backend_utils as pb_utils

        self.model_name = params.model_name
        self.max_streams = stream_bound(params.get_int("max_streams", 64), sequence_slots)
        self._store: StreamStateStore[StateT] = StreamStateStore(
            max_streams=self.max_streams,
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
        """A START request (re)creates the stream's state; any other request must find it.

        A START of a new stream while every slot is held raises ``StreamCapacityError`` (no state is
        built, no other stream is touched): see :mod:`services.common.stream_state`.
        """
        if flags.start:
            self._store.check_room(str(flags.stream_id))
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
