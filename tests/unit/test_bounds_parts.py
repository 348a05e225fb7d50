"""Issue 13's parts that need no server: the inbox and outbox bounds, flags, ids, and error meanings."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

from orchestrator.converse.inbox import Inbox, SessionIdle
from orchestrator.converse.outbox import CLOSE, Outbox
from orchestrator.errors import DeadlineExceeded, InvalidArgument, Unavailable
from orchestrator.limits.calls import first_within, prepend
from orchestrator.server.bounds_config import (
    BoundsConfigError,
    add_bounds_flags,
    bounds_settings,
    check_bounds,
    server_options,
)
from orchestrator.server.contracts import ServeSettings
from orchestrator.state.errors import RedisOutOfMemory, SessionNotFound, redis_failure
from orchestrator.state.ids import checked_session_id
from orchestrator.tasks.prompts import MAX_TEXT_CHARS
from orchestrator.tasks.synthesize import SECONDS_PER_SPEECH_TOKEN, Synthesizer


async def _events(*items: int, then_wait: asyncio.Event | None = None) -> AsyncIterator[int]:
    for item in items:
        yield item
    if then_wait is not None:
        await then_wait.wait()


# --- inbox: idle limit and stop ------------------------------------------------------------------------------


async def test_the_inbox_ends_an_idle_client_with_deadline_exceeded() -> None:
    never = asyncio.Event()
    inbox = Inbox(_events(1, then_wait=never), idle_seconds=0.2, busy=lambda: False)
    seen = [item async for item in inbox.events()]
    assert seen == [1]
    assert isinstance(inbox.stop_reason, SessionIdle) and inbox.stop_reason.code_name == "DEADLINE_EXCEEDED"


async def test_the_inbox_does_not_count_a_playing_response_as_idle() -> None:
    never = asyncio.Event()
    busy = [True]
    inbox = Inbox(_events(then_wait=never), idle_seconds=0.1, busy=lambda: busy[0])
    reader = asyncio.create_task(anext(inbox.events(), None))
    await asyncio.sleep(0.35)
    assert not reader.done()  # three idle periods passed while busy
    busy[0] = False
    assert await asyncio.wait_for(reader, 1) is None
    assert isinstance(inbox.stop_reason, SessionIdle)


async def test_a_stop_ends_the_inbox_at_once_and_the_first_reason_wins() -> None:
    never = asyncio.Event()
    inbox = Inbox(_events(then_wait=never), idle_seconds=60, busy=lambda: False)
    reader = asyncio.create_task(anext(inbox.events(), None))
    await asyncio.sleep(0.05)
    inbox.stop(Unavailable("draining"))
    inbox.stop(DeadlineExceeded("later"))
    assert await asyncio.wait_for(reader, 1) is None
    assert inbox.stop_reason is not None and inbox.stop_reason.message == "draining"


async def test_the_inbox_ends_when_the_client_half_closes() -> None:
    inbox = Inbox(_events(1, 2, 3), idle_seconds=1, busy=lambda: False)
    assert [item async for item in inbox.events()] == [1, 2, 3] and inbox.stop_reason is None


# --- outbox: a client that does not read ---------------------------------------------------------------------


async def test_the_outbox_drops_past_its_bound_and_says_so_once() -> None:
    overflows: list[int] = []
    box: Outbox[int] = Outbox(3, lambda: overflows.append(1))
    assert [box.put(n) for n in range(5)] == [True, True, True, False, False]
    assert overflows == [1] and box.dropped == 2 and len(box) == 3
    box.close()  # the end mark always fits
    assert [await box.get() for _ in range(4)] == [0, 1, 2, CLOSE]


# --- the first message -----------------------------------------------------------------------------------------


async def test_the_first_message_must_come_in_time_and_is_put_back() -> None:
    never = asyncio.Event()
    with pytest.raises(DeadlineExceeded, match="send the `session` event first"):
        await first_within(_events(then_wait=never), 0.1, "the `session` event")
    events = _events(7, 8)
    first = await first_within(events, 1, "x")
    assert [item async for item in prepend(first, events)] == [7, 8]
    assert await first_within(_events(), 1, "x") is None


# --- flags -----------------------------------------------------------------------------------------------------


def test_the_bound_flags_reach_the_settings_and_the_server_options() -> None:
    parser = argparse.ArgumentParser()
    add_bounds_flags(parser)
    args = parser.parse_args(["--grace", "7", "--keepalive-seconds", "3", "--max-concurrent-rpcs", "9"])
    settings = ServeSettings(**bounds_settings(args))
    assert settings.drain_seconds == 7 and settings.max_concurrent_rpcs == 9
    options = dict(server_options(settings))
    assert options["grpc.keepalive_time_ms"] == 3000 and options["grpc.keepalive_timeout_ms"] == 5000
    assert options["grpc.http2.ping_timeout_ms"] == 5000  # else gRPC core waits 60 s for a ping's ack
    assert options["grpc.max_connection_age_grace_ms"] == (3600 + 7) * 1000  # no session is cut by recycling
    assert options["grpc.so_reuseport"] == 0
    check_bounds(settings)
    with pytest.raises(BoundsConfigError, match="--session-idle-seconds"):
        check_bounds(ServeSettings(session_idle_seconds=0))


# --- ids and errors --------------------------------------------------------------------------------------------


def test_session_ids_are_checked_before_they_name_a_key() -> None:
    good = "0123456789abcdef0123456789abcdef"
    assert checked_session_id(good) == good
    with pytest.raises(InvalidArgument, match="empty"):
        checked_session_id("")
    for bad in (f"{good}:turns", good.upper(), good[:-1], "../" + good, good + "\n"):
        with pytest.raises(SessionNotFound):
            checked_session_id(bad)


def test_redis_failures_mean_retry_or_back_off_never_internal() -> None:
    assert isinstance(redis_failure(RedisConnectionError("gone")), Unavailable)
    assert isinstance(redis_failure(TimeoutError()), Unavailable)
    read_only = redis_failure(ReadOnlyError("You can't write against a read only replica."))
    assert isinstance(read_only, Unavailable) and "failover" in read_only.message
    oom = redis_failure(OutOfMemoryError("command not allowed when used memory > 'maxmemory'."))
    assert isinstance(oom, RedisOutOfMemory) and oom.code_name == "RESOURCE_EXHAUSTED"
    scripted = ResponseError("OOM command not allowed when used memory > 'maxmemory'. script: abc, on @user_script")
    assert isinstance(redis_failure(scripted), RedisOutOfMemory)
    assert redis_failure(ResponseError("WRONGTYPE Operation against a key")) is None  # a bug of ours: INTERNAL


# --- Synthesize's reservation ----------------------------------------------------------------------------------


class _NoTriton:
    async def infer(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("no Triton call to compute a bound")

    def open_stream(self, model: str) -> object:
        raise AssertionError("no Triton call to compute a bound")


def test_the_synthesis_bound_covers_every_speech_token_the_call_may_ask_for() -> None:
    synthesizer = Synthesizer(_NoTriton())  # type: ignore[arg-type]
    c = synthesizer.config
    short = synthesizer.max_audio_seconds("Hello.", "")
    assert short == pytest.approx((len("Hello.") // c.text_per_group * c.tokens_per_group + c.max_tail_tokens) * 0.04)
    long_text = "Read this sentence aloud, please. " * 100
    bound = synthesizer.max_audio_seconds(long_text, "")
    tokens = len(long_text.strip().encode())  # the smoke tokenizer: a token per byte
    assert bound >= tokens // c.text_per_group * c.tokens_per_group * SECONDS_PER_SPEECH_TOKEN
    from orchestrator.tasks.prompts import TaskInputError

    with pytest.raises(TaskInputError):
        synthesizer.max_audio_seconds("x" * (MAX_TEXT_CHARS + 1), "")
