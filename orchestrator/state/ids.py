"""What a session id looks like, checked before it becomes part of a Redis key.

Ids are ``uuid4().hex`` (32 lowercase hex digits). An id that is anything else names no session, and
must answer exactly as an unknown one: ``abc:turns`` would otherwise name another session's turn
list, and Redis's WRONGTYPE error (an INTERNAL) would tell a caller that session ``abc`` exists.
"""

from __future__ import annotations

import re

from orchestrator.errors import InvalidArgument
from orchestrator.state.errors import SessionNotFound

_SESSION_ID = re.compile(r"[0-9a-f]{32}")


def is_session_id(value: str) -> bool:
    return _SESSION_ID.fullmatch(value) is not None


def checked_session_id(value: str) -> str:
    """``value`` when it can be a session id; InvalidArgument when empty, else SessionNotFound (NOT_FOUND)."""
    if not value:
        raise InvalidArgument("session_id is empty: pass the id that SessionStarted gave")
    if not is_session_id(value):
        raise SessionNotFound(value[:64])
    return value
