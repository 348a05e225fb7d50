"""``FaultyTcpProxy``: a TCP proxy that passes, stalls, delays or drops the traffic of a real connection.

It sits between the orchestrator and Triton's gRPC port, so a test can break the network path the
way networks break: a stall (packets stop, nobody closes anything: only a deadline notices), added
latency, or connections reset. It runs its own event loop on a thread, so a test that blocks (a
Triton restart, ``time.sleep``) never stalls the proxy by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from concurrent.futures import Future
from typing import Any

CHUNK = 65_536


class Mode(enum.Enum):
    PASS = "pass"  # forward everything
    STALL = "stall"  # forward nothing, keep the connections open (bytes are held, sent on PASS)
    STALL_REPLIES = "stall_replies"  # forward requests upstream, hold every reply (a one-way partition)
    DROP = "drop"  # close every connection, and each new one at once


class FaultyTcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        self.mode = Mode.PASS
        self.delay_seconds = 0.0
        self.connections = 0  # accepted so far
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faulty-tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._replies_flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> FaultyTcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    # Faults (callable from any thread) ----------------------------------------------------------

    def pass_through(self) -> None:
        self._call(self._set(Mode.PASS))

    def stall(self) -> None:
        self._call(self._set(Mode.STALL))

    def stall_replies(self) -> None:
        """Requests still reach the upstream (and are executed there); its replies are held."""
        self._call(self._set(Mode.STALL_REPLIES))

    def drop(self) -> None:
        self._call(self._set(Mode.DROP))

    def delay(self, seconds: float) -> None:
        """Hold every chunk this long before forwarding it (latency, not a stall: bytes keep flowing)."""
        self.delay_seconds = seconds

    # The proxy ------------------------------------------------------------------------------------

    def _call(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=10)

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._replies_flowing = asyncio.Event()
        self._replies_flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _set(self, mode: Mode) -> None:
        assert self._flowing is not None and self._replies_flowing is not None
        self.mode = mode
        if mode is Mode.STALL_REPLIES:
            self._flowing.set()
            self._replies_flowing.clear()
            return
        self._replies_flowing.set()
        if mode is Mode.STALL:
            self._flowing.clear()
            return
        self._flowing.set()
        if mode is Mode.DROP:
            for writer in list(self._writers):
                writer.transport.abort()  # a reset, as a crashed peer or a firewall gives

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode is Mode.DROP:
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()  # upstream down: the client sees a refused/reset connection
            return
        self._writers.update((client_writer, upstream_writer))
        try:
            await asyncio.gather(
                self._pump(client_reader, upstream_writer), self._pump(upstream_reader, client_writer, replies=True)
            )
        finally:
            for writer in (client_writer, upstream_writer):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool = False) -> None:
        assert self._flowing is not None and self._replies_flowing is not None
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                await self._flowing.wait()  # a stall holds the bytes here, the socket stays open
                if replies:
                    await self._replies_flowing.wait()
                if self.delay_seconds:
                    await asyncio.sleep(self.delay_seconds)
                writer.write(data)
                await writer.drain()
        writer.transport.abort()  # one side closed: close the other, as a real path would
