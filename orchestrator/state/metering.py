"""Count what a Redis client sends, to report Redis round trips and commands per operation.

Server-side ``INFO commandstats`` is shared by every client of the server, so on a busy Redis its
deltas mix in other work; counting at the client sees only this client's traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.typing import EncodableT


@dataclass
class CommandMeter:
    """Round trips are socket writes awaiting replies (a pipeline is one); commands are the commands in them."""

    round_trips: int = 0
    commands: int = 0

    def snapshot(self) -> tuple[int, int]:
        return self.round_trips, self.commands


def metered_redis(redis_url: str) -> tuple[Redis, CommandMeter]:
    """A TCP Redis client whose connections count into the returned meter (connect-time HELLO included)."""
    meter = CommandMeter()

    class MeteredConnection(Connection):
        def pack_command(self, *args: EncodableT) -> list[bytes]:
            meter.commands += 1
            return super().pack_command(*args)

        async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
            meter.round_trips += 1
            await super().send_packed_command(command, check_health)

    pool = ConnectionPool.from_url(redis_url, connection_class=MeteredConnection)
    return Redis(connection_pool=pool), meter
