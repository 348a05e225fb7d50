"""Domain errors of the orchestrator, each carrying the gRPC status code a client sees.

Handlers raise these; the one server interceptor (``orchestrator.server.interceptor``) turns them into
call statuses, so no handler touches status codes. A message says what went wrong and what to fix.
"""

from __future__ import annotations

from typing import ClassVar

import grpc
from google.protobuf.message import DecodeError

from orchestrator.triton.errors import TritonCapacityError, TritonUnavailableError


class MinmoError(Exception):
    """Base of the domain errors; ``code`` is the gRPC status the call ends with."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def code_name(self) -> str:
        """The status code's name (``INVALID_ARGUMENT``), as the ``Error`` event of Converse carries it."""
        return str(self.code.name)


class InvalidArgument(MinmoError):
    """The request is malformed: the caller must change it before retrying."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(MinmoError):
    """The named session (or resume token) does not exist or has expired."""

    code = grpc.StatusCode.NOT_FOUND


class ResourceExhausted(MinmoError):
    """A limit is reached (sessions per process or tenant, audio rate): retry later or elsewhere.

    ``retry_after_ms``, when known, goes to the client as trailing metadata ``retry-after-ms`` (the
    message says it too), so a client can back off without parsing text.
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class Unavailable(MinmoError):
    """A dependency (Triton, Redis) cannot be reached: retryable, the session is kept."""

    code = grpc.StatusCode.UNAVAILABLE


class FailedPrecondition(MinmoError):
    """The request is valid but not in the session's current state (e.g. commit with model turn detection)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class DeadlineExceeded(MinmoError):
    """A time bound of the server ran out (the first event, an idle or too long call); the message says which."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Aborted(MinmoError):
    """The call lost a race it cannot win (its session is owned by a newer connection); resume to go on."""

    code = grpc.StatusCode.ABORTED


class PermissionDenied(MinmoError):
    """The caller may not do this (e.g. a resume token that does not match the session)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unimplemented(MinmoError):
    """This server does not offer the method (yet)."""

    code = grpc.StatusCode.UNIMPLEMENTED


def as_domain_error(exc: BaseException) -> MinmoError | None:
    """The domain error ``exc`` stands for, or None when it is a fault of ours (INTERNAL).

    Triton being unreachable or its models unready is the one foreign failure with a meaning for the
    client (retry, the session is kept). Other Triton errors stay faults unless a handler, which knows
    whether the client caused them, converts them itself.
    """
    if isinstance(exc, MinmoError):
        return exc
    if isinstance(exc, TritonCapacityError):
        return ResourceExhausted(
            f"the model server is at capacity ({exc.model}: every stream slot is in use); retry in a few seconds "
            "or on another replica",
            retry_after_ms=2_000,
        )
    if isinstance(exc, TritonUnavailableError):
        return Unavailable(f"the model server is unavailable ({exc.model}: {exc.message}); retry shortly")
    if isinstance(exc, DecodeError):
        # gRPC parses each request message while the handler iterates them: bytes that are no valid
        # message are the client's fault, not ours.
        return InvalidArgument(f"a request message is not valid protobuf ({exc}): send the method's message type")
    if isinstance(exc, BaseExceptionGroup):
        # A TaskGroup (a Converse session) wraps what ended it; it maps when every part does.
        mapped = [as_domain_error(part) for part in exc.exceptions]
        if mapped and all(error is not None for error in mapped):
            return mapped[0]
    return None
