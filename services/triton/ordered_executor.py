"""Run work for many streams concurrently while keeping each stream's requests in arrival order.

The thread-per-stream path of a decoupled model that computes nothing itself (the GPU profile's backbone,
which waits on its TensorRT-LLM executor; the models that compute batch on a step scheduler instead,
:mod:`services.triton.scheduler`). Its ``execute()`` must return quickly so Triton can hand it the
next request (another session's prefill, a STOP of a running generation), so the work runs on a small
thread pool, each thread mostly waiting on the engine. Requests of one stream must still run one after
another and in order, which a plain pool does not promise.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor


class OrderedExecutor:
    def __init__(self, workers: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._pending: dict[Hashable, deque[Callable[[], None]]] = {}

    def submit(self, key: Hashable, job: Callable[[], None]) -> None:
        """Queue ``job`` behind earlier jobs of ``key``; jobs of other keys may run beside it."""
        with self._lock:
            queue = self._pending.get(key)
            if queue is not None:
                queue.append(job)
                return
            self._pending[key] = deque([job])
        self._pool.submit(self._drain, key)

    def _drain(self, key: Hashable) -> None:
        while True:
            with self._lock:
                queue = self._pending[key]
                if not queue:
                    del self._pending[key]
                    return
                job = queue[0]
            try:
                job()
            finally:
                with self._lock:
                    queue.popleft()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
