"""Decoupled response discipline: every stream ends with the FINAL flag, also on error or cancel.

CosyVoice's Triton runtime shows what happens otherwise: a client waits forever for a stream that
died with an exception. Here every last response goes through :func:`send_final`: the step
scheduler's requests end there (:class:`~services.triton.serving.ModelServing`), and on the
thread-per-stream path :func:`stream_responses` drives a generator of responses, stops it when the
client cancels or sends STOP, and always closes the stream.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from typing import Any

from minmo_contracts.errors import INVALID_PREFIX
from services.common.stream_state import StreamCapacityError, UnknownStreamError
from services.triton.tensors import InvalidInputError


def error_for(exc: BaseException) -> Any:
    """Map a domain exception to a TritonError with the right code; unexpected ones become INTERNAL."""
    import triton_python_backend_utils as pb_utils

    if isinstance(exc, InvalidInputError | UnknownStreamError | ValueError):
        # A streamed error carries only its text, so the text itself says it is the caller's fault.
        return pb_utils.TritonError(f"{INVALID_PREFIX}{exc}", pb_utils.TritonError.INVALID_ARG)
    if isinstance(exc, StreamCapacityError):
        # Nobody's fault and nothing broken: the text carries CAPACITY_MARKER (RESOURCE_EXHAUSTED upstream).
        return pb_utils.TritonError(str(exc), pb_utils.TritonError.UNAVAILABLE)
    return pb_utils.TritonError(f"{type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL)


def log_unexpected(model: str, exc: BaseException) -> None:
    import triton_python_backend_utils as pb_utils

    if not isinstance(exc, InvalidInputError | UnknownStreamError | ValueError | StreamCapacityError):
        pb_utils.Logger.log_error(f"{model}: {''.join(traceback.format_exception(exc))}")


def stream_responses(
    model: str,
    request: Any,
    produce: Callable[[Callable[[], bool]], Iterator[Any]],
    on_cancel: Callable[[], object] | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Send every response ``produce`` yields, then FINAL; on error send it as the final response.

    ``produce`` receives an ``is_cancelled`` callable to poll between steps so that a cancelled
    generation stops within one step. A cancelled gRPC call and a ``stopped`` stream (the client's
    STOP request) end the generation alike. (The batched models end their requests through
    :class:`~services.triton.serving.ModelServing`'s scheduler instead; this is the worker-thread path.)
    """
    import triton_python_backend_utils as pb_utils

    sender = request.get_response_sender()

    def is_cancelled() -> bool:
        return bool(stopped() or sender.is_cancelled())

    cancelled = False
    responses = produce(is_cancelled)
    try:
        for response in responses:
            if is_cancelled():
                cancelled = True
                break
            sender.send(response)
        cancelled = cancelled or is_cancelled()
    except Exception as exc:  # every failure still ends the stream, with its message
        log_unexpected(model, exc)
        send_final(sender, pb_utils.InferenceResponse(error=error_for(exc)))
        return
    finally:
        close = getattr(responses, "close", None)
        if close is not None:
            close()
    if cancelled and on_cancel is not None:
        on_cancel()
    send_final(sender, None)


def send_final(sender: Any, response: Any) -> None:
    """Close the stream; a client that has already gone away makes ``send`` raise, which is fine."""
    import triton_python_backend_utils as pb_utils

    final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
    try:
        if response is None:
            sender.send(flags=final)
        else:
            sender.send(response, flags=final)
    except Exception as exc:
        pb_utils.Logger.log_warn(f"could not send the final response: {exc}")
