"""A small Converse client for the tests: sends events from a queue, records every server event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
from minmo.v1 import minmo_pb2 as pb
from minmo.v1 import minmo_pb2_grpc

from services.speech_synth import espeak

CHUNK = 3200  # 200 ms at 16 kHz


def speech(text: str, cache: Path, voice: str = "en-us") -> np.ndarray:
    return espeak(text, voice=voice, rate=165, pitch=50, cache_dir=cache)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16_000), np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


class ConverseClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._outgoing: asyncio.Queue[pb.ClientEvent | None] = asyncio.Queue()
        self._call = minmo_pb2_grpc.MinMoStub(channel).Converse(self._requests())
        self.events: list[pb.ServerEvent] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())
        self.error: grpc.aio.AioRpcError | None = None

    async def _requests(self) -> AsyncIterator[pb.ClientEvent]:
        while (event := await self._outgoing.get()) is not None:
            yield event

    async def _read(self) -> None:
        try:
            async for event in self._call:
                async with self._arrived:
                    self.events.append(event)
                    self._arrived.notify_all()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        async with self._arrived:
            self._arrived.notify_all()

    def send(self, **event: object) -> None:
        self._outgoing.put_nowait(pb.ClientEvent(**event))  # type: ignore[arg-type]

    def send_audio(self, samples: np.ndarray) -> None:
        for offset in range(0, len(samples), CHUNK):
            self.send(audio=pb.AudioChunk(data=pcm16(samples[offset : offset + CHUNK])))

    async def send_audio_paced(self, samples: np.ndarray, *, pace: float = 1.0) -> None:
        for offset in range(0, len(samples), CHUNK):
            self.send(audio=pb.AudioChunk(data=pcm16(samples[offset : offset + CHUNK])))
            await asyncio.sleep(CHUNK / 16_000 / pace)

    def of(self, kind: str) -> list[pb.ServerEvent]:
        return [e for e in self.events if e.WhichOneof("event") == kind]

    async def wait_for(self, kind: str, count: int = 1, within: float = 60.0) -> pb.ServerEvent:
        async def ready() -> pb.ServerEvent:
            async with self._arrived:
                while len(self.of(kind)) < count:
                    if self._reader.done():
                        raise AssertionError(f"stream ended before {count} {kind} event(s): {self.error}")
                    await self._arrived.wait()
                return self.of(kind)[count - 1]

        return await asyncio.wait_for(ready(), within)

    async def close(self) -> None:
        self._outgoing.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._reader, 30)
        self._call.cancel()

    async def finished(self, within: float = 30.0) -> None:
        await asyncio.wait_for(self._reader, within)
