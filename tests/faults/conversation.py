"""A Converse session driven by typed turns, with a ledger of what the client saw acknowledged.

A user text turn is acknowledged by its ``response_started`` (the server persists the turn first), an
assistant turn by a ``response_done`` that is COMPLETED or INTERRUPTED; a FAILED one stores nothing.
Responses are cut by the client (``cancel`` after the first audio) so a turn takes ~1 s, not the
whole spoken reply: the turns stay cheap, and the stored (truncated) text is still checked.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
from minmo.v1 import minmo_pb2 as pb

from orchestrator.state.records import StoredTurn
from tests.integration.converse_client import ConverseClient

Turn = tuple[str, str]  # (role, text)
CONFIG = pb.SessionConfig(max_response_tokens=200)  # long enough to be mid-generation when a fault hits


class NoAnswer(AssertionError):
    """The server neither answered nor failed in time: the hang the deadlines exist to prevent."""


@dataclass
class Ledger:
    acknowledged: list[Turn] = field(default_factory=list)

    def audit(self, history: list[StoredTurn]) -> tuple[int, int]:
        """(turns lost, turns duplicated): acknowledged turns missing from Redis, and extra copies in it."""
        stored = [(turn.role, turn.text) for turn in history]
        position, matched = 0, 0
        for turn in self.acknowledged:  # in order: a turn found earlier in the list does not count
            if turn in stored[position:]:
                matched, position = matched + 1, stored.index(turn, position) + 1
        expected, present = Counter(self.acknowledged), Counter(stored)
        duplicated = sum(max(0, present[turn] - max(1, expected[turn])) for turn in present if present[turn] > 1)
        return len(self.acknowledged) - matched, duplicated


class FaultSession:
    """One Converse call (a resume opens a new one on the same ledger)."""

    def __init__(self, address: str, ledger: Ledger | None = None) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.client = ConverseClient(self.channel)
        self.ledger = ledger or Ledger()
        self.started: pb.SessionStarted | None = None

    async def open(self, start: pb.SessionStart, within: float = 30.0) -> pb.SessionStarted:
        self.client.send(session=start)
        self.started = (await self.client.wait_for("session_started", within=within)).session_started
        return self.started

    def count(self, kind: str) -> int:
        return len(self.client.of(kind))

    async def until(self, predicate: object, within: float, what: str) -> None:
        """Poll the recorded events until ``predicate()``; NoAnswer after ``within`` s or if the call ended."""
        assert callable(predicate)
        deadline = time.monotonic() + within
        while not predicate():
            if self.client.error is not None and not predicate():
                raise NoAnswer(f"the call ended before {what}: {self.client.error}")
            if time.monotonic() > deadline:
                raise NoAnswer(f"no {what} within {within:.0f} s; events: {self.kinds()[-12:]}")
            await asyncio.sleep(0.05)

    def kinds(self) -> list[str]:
        return [str(event.WhichOneof("event")) for event in self.client.events]

    async def send_text(self, text: str, *, attempts: int = 8, within: float = 30.0) -> int:
        """Send a user turn until it is acknowledged; return its response id.

        While the server rebuilds after a fault it may drop the turn with an UNAVAILABLE error; the
        client then retries, as the error says. A turn that got ``response_started`` is never resent.
        """
        for _ in range(attempts):
            started, errors = self.count("response_started"), self.count("error")
            self.client.send(text=pb.TextInput(text=text))
            await self.until(
                lambda s=started, e=errors: self.count("response_started") > s or self.count("error") > e,
                within,
                f"an answer to {text!r}",
            )
            if self.count("response_started") > started:
                self.ledger.acknowledged.append(("user", text))
                return int(self.client.of("response_started")[-1].response_started.response_id)
            await asyncio.sleep(1.2)
        raise AssertionError(f"{text!r} was refused {attempts} times: {self.client.of('error')[-1].error.message}")

    async def first_audio(self, response_id: int, within: float = 30.0) -> None:
        await self.until(
            lambda: any(e.audio_delta.response_id == response_id for e in self.client.of("audio_delta")),
            within,
            f"audio of response {response_id}",
        )

    async def done(self, response_id: int, within: float = 30.0) -> pb.ResponseDone:
        def finished() -> bool:
            return any(e.response_done.response_id == response_id for e in self.client.of("response_done"))

        await self.until(finished, within, f"response_done of response {response_id}")
        done = [e.response_done for e in self.client.of("response_done") if e.response_done.response_id == response_id]
        assert len(done) == 1, f"response {response_id} ended {len(done)} times"
        if done[0].status in (pb.COMPLETED, pb.INTERRUPTED):
            self.ledger.acknowledged.append(("assistant", done[0].text))
        return done[0]

    async def turn(self, text: str) -> pb.ResponseDone:
        """A whole turn: the user's text, the first audio of the reply, then a cut after 600 ms."""
        response_id = await self.send_text(text)
        await self.first_audio(response_id)
        self.client.send(cancel=pb.CancelResponse(played_ms=600))
        done = await self.done(response_id)
        assert done.status == pb.INTERRUPTED and 0 < done.played_ms <= 600, done  # at most what was sent
        return done

    async def close(self) -> None:
        self.client.send(end=pb.EndSession())
        await self.client.close()
        await self.channel.close()

    async def abandon(self) -> None:
        """The connection is gone (the server was killed): drop the call without a goodbye."""
        await self.client.close()
        await self.channel.close()
