"""Token authentication for every call, through one server interceptor.

A call carries ``authorization: Bearer <token>`` metadata; the configured verifier turns the token
into a tenant, which the handlers read with ``current_tenant()``. A call without a valid token ends
with UNAUTHENTICATED and a message saying what to send, before any handler runs.

Health checking stays open: Kubernetes probes and load balancers carry no tokens, and it reveals
only SERVING / NOT_SERVING. Reflection is not open: it lists the API to anyone who asks, so it needs
a token like the API itself (``grpcurl -H 'authorization: Bearer …'``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from orchestrator.grpc_handlers import Behavior, rebuild_handler
from orchestrator.observability import metrics
from orchestrator.security.tenant import set_tenant
from orchestrator.security.verifiers import AuthenticationFailed, Verifier

logger = logging.getLogger(__name__)

OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)
HOW_TO_AUTHENTICATE = "send gRPC metadata `authorization: Bearer <token>` (an API key or a JWT)"


def authenticate(verifier: Verifier, metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The caller's tenant, or ``AuthenticationFailed`` whose reason tells the caller what to send."""
    values = [value for key, value in metadata or () if key == "authorization"]
    if not values:
        raise AuthenticationFailed(f"missing credentials: {HOW_TO_AUTHENTICATE}")
    value = values[0] if isinstance(values[0], str) else values[0].decode("latin-1")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(f"the authorization metadata is not `Bearer <token>`: {HOW_TO_AUTHENTICATE}")
    try:
        return verifier.verify(token.strip())
    except AuthenticationFailed as exc:
        raise AuthenticationFailed(f"{exc.reason}; {HOW_TO_AUTHENTICATE}") from exc


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates each call (health excepted) and binds its tenant for the handler."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        try:
            tenant = authenticate(self.verifier, handler_call_details.invocation_metadata)  # type: ignore[attr-defined]
        except AuthenticationFailed as exc:
            logger.info("%s refused: %s", method, exc.reason)
            metrics.ERRORS.labels(code="UNAUTHENTICATED").inc()
            return _refusing(handler, exc.reason)
        return _with_tenant(handler, tenant)


def _refusing(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    def wrap(_: Behavior, streams: bool) -> Behavior:
        if streams:

            async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
                yield  # pragma: no cover - abort raises

            return refuse_stream

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

        return refuse

    return rebuild_handler(handler, wrap)


def _with_tenant(handler: grpc.RpcMethodHandler, tenant: str) -> grpc.RpcMethodHandler:
    # The tenant is bound inside the call's own task (the behavior), where the handler and the tasks it
    # starts will look for it; each shape is kept, as in the error interceptor.
    def wrap(behavior: Behavior, _: bool) -> Behavior:
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                set_tenant(tenant)
                async for response in behavior(request, context):
                    yield response

            return stream
        if inspect.iscoroutinefunction(behavior):

            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                set_tenant(tenant)
                return await behavior(request, context)

            return call
        raise TypeError(f"{behavior!r} is synchronous: the auth interceptor serves grpc.aio handlers only")

    return rebuild_handler(handler, wrap)
