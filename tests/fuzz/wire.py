"""Converse over the wire with raw bytes: what a broken or hostile client can really send.

A generic gRPC channel with identity serializers sends each request exactly as given, so a case can
mix well-formed events, truncated or spliced messages, invalid UTF-8 and messages over the server's
4 MiB receive limit. ``expected_end`` is the oracle: from the bytes alone it says how the call must
end, so a test compares what the server did with what the API documents.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError
from minmo.v1 import minmo_pb2 as pb

from orchestrator.converse import commands
from orchestrator.errors import InvalidArgument

# gRPC's default receive limit; `minmo serve` keeps it.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CONVERSE = "/minmo.v1.MinMo/Converse"


@dataclass(frozen=True)
class Oversize:
    """An audio event just over the receive limit, built when sent (hypothesis prints this, not 4 MiB)."""

    extra: int = 1

    def encode(self) -> bytes:
        return pb.ClientEvent(audio=pb.AudioChunk(data=b"\0" * (MAX_MESSAGE_BYTES + self.extra))).SerializeToString()


Item = pb.ClientEvent | bytes | Oversize


def encode(item: Item) -> bytes:
    if isinstance(item, Oversize):
        return item.encode()
    if isinstance(item, bytes):
        return item
    return item.SerializeToString()


def parsed(item: Item) -> pb.ClientEvent | None:
    """The event the server's parser makes of ``item``; None when it cannot parse it."""
    if isinstance(item, pb.ClientEvent):
        return item
    if isinstance(item, Oversize):
        return None
    try:
        return pb.ClientEvent.FromString(item)
    except DecodeError:
        return None


def fatal_code(item: Item) -> grpc.StatusCode | None:
    """The status that ends the call when ``item`` arrives mid-stream, or None when the session goes on."""
    if isinstance(item, Oversize):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INVALID_ARGUMENT if parsed(item) is None else None


def opening_code(item: Item) -> grpc.StatusCode | None:
    """The status a call that starts with ``item`` ends with before any session exists (None: it opens).

    A resume token that names no session ends NOT_FOUND: the fuzzer only ever makes up tokens.
    """
    code = fatal_code(item)
    if code is not None:
        return code
    try:
        start = commands.opening(parsed(item))
    except InvalidArgument:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.NOT_FOUND if isinstance(start, commands.ResumeSession) else None


@dataclass
class RawConverse:
    """One Converse call: requests go in through a queue, responses are read as they come."""

    channel: grpc.Channel
    timeout: float
    _outgoing: queue.Queue[bytes | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        method = self.channel.stream_stream(
            CONVERSE, request_serializer=None, response_deserializer=pb.ServerEvent.FromString
        )
        self.call = method(self._requests(), timeout=self.timeout)
        self.events: list[pb.ServerEvent] = []
        self.status: tuple[grpc.StatusCode, str] = (grpc.StatusCode.OK, "")

    def _requests(self) -> Iterator[bytes]:
        while (data := self._outgoing.get()) is not None:
            yield data

    def send(self, item: Item) -> None:
        self._outgoing.put(encode(item))

    def close_requests(self) -> None:
        self._outgoing.put(None)

    def read_until(self, predicate: object) -> pb.ServerEvent | None:
        """Read events until one satisfies ``predicate`` (returned) or the call ends (None)."""
        try:
            for event in self.call:
                self.events.append(event)
                if callable(predicate) and predicate(event):
                    return event
        except grpc.RpcError as exc:
            self.status = (exc.code(), exc.details() or "")  # type: ignore[attr-defined]
        return None

    def finish(self) -> tuple[grpc.StatusCode, str]:
        """Read to the end of the call: its status and details (OK when the server ended it cleanly)."""
        self.close_requests()
        self.read_until(None)
        return self.status
