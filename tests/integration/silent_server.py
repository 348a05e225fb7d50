"""``SilentServer``: a real TCP listener on loopback that accepts every connection, reads what it is sent,
and never answers, which is what a hung dependency looks like from the client's side (a SIGSTOPped
Redis, a Prometheus stuck in a query, an API server behind a load balancer whose backend died)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SilentServer:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._closed = threading.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @contextmanager
    def running(self) -> Iterator[SilentServer]:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._closed.set()
            self._listener.close()
            for connection in self.connections:
                connection.close()
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections.append(connection)  # kept open, never read back to
