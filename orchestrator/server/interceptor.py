"""The one place where exceptions become gRPC statuses.

Handlers raise domain errors (``orchestrator.errors``) and never set status codes themselves. This
interceptor wraps every method of the server (unary and streaming, async functions and async
generators) and ends a failed call with the error's code and message. Anything else is a fault of
ours: it is logged with its traceback and type, and the client sees INTERNAL naming the type.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from orchestrator.errors import as_domain_error
from orchestrator.grpc_handlers import Behavior, rebuild_handler
from orchestrator.observability import metrics

logger = logging.getLogger(__name__)


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to their status codes and unexpected exceptions to INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: gRPC answers UNIMPLEMENTED itself
        return wrap_handler(handler, handler_call_details.method)


def wrap_handler(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour guarded; the serializers are kept."""
    return rebuild_handler(handler, lambda behavior, _streams: _guard(behavior, method))


def _guard(behavior: Behavior, method: str) -> Behavior:
    # Response streams come in two shapes in grpc.aio: async generators that yield, and coroutines that
    # call context.write (the health service's Watch). Each keeps its shape, or gRPC would mix the two.
    if inspect.isasyncgenfunction(behavior):

        async def guarded_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for response in behavior(request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc, method)

        return guarded_stream
    if inspect.iscoroutinefunction(behavior):

        async def guarded_call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc, method)

        return guarded_call
    return behavior  # a synchronous handler runs in gRPC's thread pool, outside the event loop


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    """End the call with the status ``exc`` maps to (``context.abort`` raises and never returns)."""
    error = as_domain_error(exc)
    if error is not None:
        logger.info("%s ended with %s: %s", method, error.code_name, error.message)
        metrics.ERRORS.labels(code=error.code_name).inc()
        retry_after_ms = getattr(error, "retry_after_ms", None)
        trailing = (("retry-after-ms", str(retry_after_ms)),) if retry_after_ms is not None else ()
        await context.abort(error.code, error.message, trailing_metadata=trailing)
    logger.error("%s failed with an unexpected %s", method, type(exc).__name__, exc_info=exc)
    metrics.ERRORS.labels(code="INTERNAL").inc()
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal error in {method} ({type(exc).__name__}); the orchestrator log has the traceback",
    )
