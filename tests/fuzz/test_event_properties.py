"""Properties of Converse's event validation: any client message -> a typed command or InvalidArgument.

No server: ``orchestrator.converse.commands`` is what the handler and the session call on every event.
Raw bytes go through the protobuf parser first, as gRPC does; a parse failure must map to
INVALID_ARGUMENT through the same ``as_domain_error`` the server's interceptor uses.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from minmo.v1 import minmo_pb2 as pb

from orchestrator.converse import commands
from orchestrator.converse.settings import MAX_RESPONSE_TOKENS, SessionSettings
from orchestrator.errors import InvalidArgument, as_domain_error
from orchestrator.tasks.handlers import TranscribeService
from orchestrator.tasks.transcribe import Transcriber
from orchestrator.triton.client import TritonModels
from tests.fuzz.counts import count
from tests.fuzz.strategies import (
    ENUM_VALUES,
    SAMPLE_RATES,
    client_events,
    invalid_utf8_text,
    raw_messages,
    session_configs,
)

PROPERTY = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def check_settings(settings_: SessionSettings) -> None:
    """What the session (and the Redis record) may rely on for accepted settings."""
    assert settings_.encoding in ("pcm16", "float32")
    assert 8_000 <= settings_.sample_rate_hz <= 48_000
    assert settings_.turn_detection in ("model", "client")
    assert 1 <= settings_.max_response_tokens <= MAX_RESPONSE_TOKENS
    assert math.isfinite(settings_.temperature) and 0.0 <= settings_.temperature <= 2.0
    assert 1 <= len(settings_.instructions) <= 4096
    # Resume reads the settings back from Redis as JSON: they must survive the trip unchanged.
    assert SessionSettings.from_dict(json.loads(json.dumps(settings_.to_dict()))) == settings_
    # GetSession shows them as a SessionConfig: validating that again gives the same settings.
    assert SessionSettings.from_proto(settings_.to_proto()) == settings_


def classify(event: pb.ClientEvent, *, first: bool) -> object:
    """The typed result, or the InvalidArgument, of one event at the start or in the middle of a call."""
    try:
        return commands.opening(event) if first else commands.command(event)
    except InvalidArgument as exc:
        assert exc.message.strip() and exc.code == grpc.StatusCode.INVALID_ARGUMENT
        return exc


@PROPERTY
@given(event=client_events())
@example(event=pb.ClientEvent())
@example(event=pb.ClientEvent(session=pb.SessionStart(resume_token="")))
@example(event=pb.ClientEvent(session=pb.SessionStart(config=pb.SessionConfig(temperature=float("nan")))))
@example(event=pb.ClientEvent(session=pb.SessionStart(config=pb.SessionConfig(turn_detection=99))))
def test_a_first_event_opens_a_valid_session_or_is_invalid_argument(event: pb.ClientEvent) -> None:
    count("unit.events.opening")
    result = classify(event, first=True)
    if isinstance(result, commands.StartSession):
        check_settings(result.settings)
    elif isinstance(result, commands.ResumeSession):
        assert result.token.strip() and len(result.token) <= commands.MAX_RESUME_TOKEN_CHARS
    else:
        assert isinstance(result, InvalidArgument)


@PROPERTY
@given(event=client_events())
@example(event=pb.ClientEvent(cancel=pb.CancelResponse(played_ms=-1)))
@example(event=pb.ClientEvent(text=pb.TextInput(text="a" * 4097)))
@example(event=pb.ClientEvent(text=pb.TextInput(text=" \n")))
def test_a_later_event_is_a_command_or_invalid_argument(event: pb.ClientEvent) -> None:
    count("unit.events.command")
    kind = event.WhichOneof("event")
    result = classify(event, first=False)
    if isinstance(result, commands.SendText):
        assert result.text.strip() and len(result.text) <= commands.MAX_TEXT_CHARS
    elif isinstance(result, commands.Cancel):
        assert result.played_ms >= 0
    elif isinstance(result, commands.AppendAudio):
        assert result.data == event.audio.data  # the decoder, which knows the format, judges the bytes
    elif isinstance(result, InvalidArgument):
        assert kind in (None, "session", "text", "cancel")
    else:
        assert isinstance(result, commands.Commit | commands.End)


@PROPERTY
@given(events=st.lists(client_events(), min_size=1, max_size=8))
def test_any_event_order_classifies_each_event_on_its_own(events: list[pb.ClientEvent]) -> None:
    """Validation keeps no state: an event's verdict is the same wherever it comes in the stream."""
    count("unit.events.orders")
    verdicts = [type(classify(event, first=index == 0)) for index, event in enumerate(events)]
    replayed = [type(classify(event, first=index == 0)) for index, event in enumerate(events)]
    assert verdicts == replayed
    later_alone = [type(classify(event, first=False)) for event in reversed(events[1:])]
    assert later_alone == list(reversed(verdicts[1:]))


@PROPERTY
@given(data=raw_messages())
@example(data=invalid_utf8_text(b""))
@example(data=b"\x12\x05\x12\x03\xc3\x28a")  # resume_token with an invalid two-byte sequence
@example(data=b"\x1a\x80\x80\x80\x80\x10")  # a length prefix far past the end
def test_raw_bytes_parse_to_an_event_or_fail_as_invalid_argument(data: bytes) -> None:
    count("unit.events.raw_bytes")
    try:
        event = pb.ClientEvent.FromString(data)
    except DecodeError as exc:
        error = as_domain_error(exc)
        assert isinstance(error, InvalidArgument) and "not valid protobuf" in error.message
        return
    classify(event, first=True)
    classify(event, first=False)


def test_invalid_utf8_in_a_string_field_is_refused_by_the_parser() -> None:
    """proto3 strings must be UTF-8: such bytes never reach the session as text."""
    for payload in (b"", b"abc", b"\xfe\xfe"):
        try:
            pb.ClientEvent.FromString(invalid_utf8_text(payload))
        except DecodeError:
            continue
        raise AssertionError(f"invalid UTF-8 {payload!r} was parsed as text")


@PROPERTY
@given(config=session_configs())
def test_session_configs_with_unknown_enums_or_extreme_numbers_are_named_in_the_error(
    config: pb.SessionConfig,
) -> None:
    count("unit.events.configs")
    try:
        settings_ = SessionSettings.from_proto(config)
    except InvalidArgument as exc:
        named = ("encoding", "sample_rate_hz", "turn_detection", "max_response_tokens", "temperature", "instructions")
        assert any(field in exc.message for field in named), exc.message
        return
    check_settings(settings_)


@settings(max_examples=60, deadline=None, database=None)
@given(encoding=ENUM_VALUES, rate=SAMPLE_RATES, task=ENUM_VALUES)
@example(encoding=7, rate=16_000, task=1)  # was INTERNAL: the enum's Name() raised a plain ValueError
def test_transcribe_configs_with_unknown_enums_are_invalid_argument(encoding: int, rate: int, task: int) -> None:
    """Transcribe validates its config before the first Triton call; nothing here may reach the model."""
    count("unit.events.transcribe_configs")
    config = pb.TranscribeConfig(task=task, audio_format=pb.AudioFormat(encoding=encoding, sample_rate_hz=rate))
    valid = encoding in (0, 1, 2) and 8_000 <= (rate or 16_000) <= 48_000 and task in (0, 1, 2, 3)
    if valid:
        return  # a valid config goes on to the model: the integration tier covers it

    async def first_outcome() -> Exception | None:
        async def requests() -> AsyncIterator[pb.TranscribeRequest]:
            yield pb.TranscribeRequest(config=config)

        models = TritonModels("127.0.0.1:1")  # never called: the config is refused first
        try:
            async for _ in TranscribeService(Transcriber(models)).transcribe(requests(), None):
                pass
        except Exception as exc:
            return exc
        finally:
            await models.close()
        return None

    outcome = asyncio.run(first_outcome())
    assert isinstance(outcome, InvalidArgument), repr(outcome)
    assert any(word in outcome.message for word in ("task", "encoding", "sample_rate_hz")), outcome.message


def test_a_failure_inside_a_session_task_group_keeps_its_status() -> None:
    """A Converse session runs in a TaskGroup, which wraps what ended it; the wrapper must not hide the status."""
    try:
        pb.ClientEvent.FromString(invalid_utf8_text(b""))
    except DecodeError as exc:
        parse_error = exc
    wrapped = as_domain_error(BaseExceptionGroup("unhandled errors in a TaskGroup", [parse_error]))
    assert isinstance(wrapped, InvalidArgument)
    assert as_domain_error(ExceptionGroup("mixed", [parse_error, ValueError("a bug")])) is None  # stays INTERNAL
