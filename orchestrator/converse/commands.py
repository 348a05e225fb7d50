"""Client events of Converse -> typed commands, or an ``InvalidArgument`` that says what to fix.

The wire message (``ClientEvent``) lets a client send anything: no event at all, a second ``session``
event, negative durations, blank or oversized text. Every field check of a single event happens here,
once, so the session logic only sees well-formed commands and only judges what depends on its state
(a commit with no audio, a cancel with no response). Audio bytes are checked by the session's
``InputAudioDecoder``, which knows the session's format.
"""

from __future__ import annotations

from dataclasses import dataclass

from minmo.v1 import minmo_pb2 as pb

from orchestrator.converse.settings import SessionSettings
from orchestrator.errors import InvalidArgument

MAX_TEXT_CHARS = 4096
# A resume token is ~43 URL-safe characters; anything far longer is not one of ours.
MAX_RESUME_TOKEN_CHARS = 256


@dataclass(frozen=True)
class StartSession:
    settings: SessionSettings


@dataclass(frozen=True)
class ResumeSession:
    token: str


@dataclass(frozen=True)
class AppendAudio:
    data: bytes


@dataclass(frozen=True)
class SendText:
    text: str


@dataclass(frozen=True)
class Commit:
    pass


@dataclass(frozen=True)
class Cancel:
    # 0 means "all audio sent so far was played", as in the proto.
    played_ms: int


@dataclass(frozen=True)
class End:
    pass


Opening = StartSession | ResumeSession
Command = AppendAudio | SendText | Commit | Cancel | End


def opening(event: pb.ClientEvent | None) -> Opening:
    """The first event of a call: a new session's validated settings, or a resume token."""
    if event is None or event.WhichOneof("event") != "session":
        raise InvalidArgument("the first Converse event must be `session` (a SessionConfig or a resume_token)")
    start = event.session
    if start.WhichOneof("start") == "resume_token":
        token = start.resume_token
        if not token.strip():
            raise InvalidArgument("resume_token is empty: pass the token SessionStarted gave, or a SessionConfig")
        if len(token) > MAX_RESUME_TOKEN_CHARS:
            raise InvalidArgument(
                f"resume_token has {len(token)} characters, more than any token this server issues "
                f"({MAX_RESUME_TOKEN_CHARS}): pass the token SessionStarted gave"
            )
        return ResumeSession(token)
    # An empty SessionStart is a new session with the default config, like an empty SessionConfig.
    return StartSession(SessionSettings.from_proto(start.config))


def command(event: pb.ClientEvent) -> Command:
    """One event after the session started; raises ``InvalidArgument`` for a malformed one."""
    kind = event.WhichOneof("event")
    if kind == "audio":
        return AppendAudio(event.audio.data)
    if kind == "text":
        return SendText(_text(event.text.text))
    if kind == "commit":
        return Commit()
    if kind == "cancel":
        if event.cancel.played_ms < 0:
            raise InvalidArgument(
                f"cancel.played_ms is {event.cancel.played_ms}: send the milliseconds of response audio played "
                "(>= 0; 0 means all audio sent so far)"
            )
        return Cancel(event.cancel.played_ms)
    if kind == "end":
        return End()
    if kind == "session":
        raise InvalidArgument("`session` may only be the first event of a call; to switch sessions open a new call")
    raise InvalidArgument("the ClientEvent has no event set: send one of audio, text, commit, cancel or end")


def _text(text: str) -> str:
    if not text.strip():
        raise InvalidArgument("text is empty or blank: send 1 to 4096 characters")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgument(f"text has {len(text)} characters: send at most {MAX_TEXT_CHARS} per TextInput")
    return text
