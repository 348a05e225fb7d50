"""``FaultyTcpProxy`` itself, over a real echo server: each mode does what the fault tests rely on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.faults.tcp_proxy import FaultyTcpProxy


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, within: float) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), within)


async def closed(reader: asyncio.StreamReader) -> bool:
    """True when the peer closed or reset the connection (a reset surfaces as either, by timing)."""
    try:
        return await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionResetError:
        return True


async def test_pass_stall_delay_and_drop(echo_port: int) -> None:
    proxy = FaultyTcpProxy("127.0.0.1", echo_port).start()
    try:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        assert await roundtrip(reader, writer, b"ping", 2) == b"ping"

        proxy.stall()
        with pytest.raises(TimeoutError):
            await roundtrip(reader, writer, b"held", 0.5)
        assert not reader.at_eof(), "a stall keeps the connection open"
        proxy.pass_through()
        assert await asyncio.wait_for(reader.readexactly(4), 2) == b"held"  # held bytes arrive, in order

        proxy.delay(0.3)
        started = time.monotonic()
        assert await roundtrip(reader, writer, b"slow", 5) == b"slow"
        assert time.monotonic() - started >= 0.6  # delayed on the way there and back
        proxy.delay(0)

        proxy.drop()
        assert await closed(reader)
        writer.close()
        dropped_reader, _ = await asyncio.open_connection(proxy.host, proxy.port)
        assert await closed(dropped_reader), "new connections are closed while dropping"
        proxy.pass_through()
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        assert await roundtrip(reader, writer, b"back", 2) == b"back"
        writer.close()
    finally:
        proxy.stop()
