"""Failures of a Triton call, typed so the orchestrator can map them to gRPC status codes."""

from __future__ import annotations


class TritonStageError(RuntimeError):
    """A model answered with an error (``invalid`` means the request was malformed)."""

    def __init__(self, model: str, message: str, *, invalid: bool = False, status: str = "") -> None:
        super().__init__(f"{model}: {message}")
        self.model = model
        self.message = message
        self.invalid = invalid
        self.status = status  # the gRPC status Triton answered with; empty for errors inside a stream


class TritonUnavailableError(TritonStageError):
    """Triton could not be reached or the model is not ready: retryable, the session is kept."""


class TritonCapacityError(TritonStageError):
    """The model holds as many streams as it may and refused a new one: retry later (RESOURCE_EXHAUSTED).

    The model refuses rather than evicting another session's state (``services.common.stream_state``).
    """
