"""Token authentication for every call, through one server interceptor.

A call carries ``authorization: Bearer <token>`` metadata; the configured verifier turns the token
into a tenant, which the handlers read with ``current_tenant()``. A call without a valid token ends
with UNAUTHENTICATED and a message saying what to send, before any handler runs.

Health checking stays open: Kubernetes probes and load balancers carry no tokens, and it reveals
only SERVING / NOT_SERVING. Reflection is not open: it lists the API to anyone who asks, so it needs
a token like the API itself (``grpcurl -H 'authorization: Bearer …'``).

Exactly one ``authorization`` entry is accepted: with two, a proxy and the server could each read a
different one. A verifier that may block (a JWKS fetch) runs on a thread, never on the event loop; when
it cannot check a token now (``VerifierUnavailable``) the call ends with UNAVAILABLE, not
UNAUTHENTICATED. With ``--auth mtls`` the tenant is the client certificate's identity, mapped by
``orchestrator.security.identities``, read from the call's TLS auth context when the call runs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc
import grpc.aio

from orchestrator.grpc_handlers import Behavior, rebuild_handler
from orchestrator.observability import metrics
from orchestrator.security.tenant import set_tenant
from orchestrator.security.verifiers import AuthenticationFailed, Verifier, VerifierUnavailable

logger = logging.getLogger(__name__)

OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)
HOW_TO_AUTHENTICATE = "send gRPC metadata `authorization: Bearer <token>` (an API key or a JWT)"


def authenticate(verifier: Verifier, metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The caller's tenant, or ``AuthenticationFailed`` whose reason tells the caller what to send."""
    token = bearer_token(metadata)
    try:
        return verifier.verify(token)
    except AuthenticationFailed as exc:
        raise AuthenticationFailed(f"{exc.reason}; {HOW_TO_AUTHENTICATE}") from exc


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The one bearer token of the call's metadata; AuthenticationFailed for none, two, or a malformed one."""
    values = [value for key, value in metadata or () if key == "authorization"]
    if not values:
        raise AuthenticationFailed(f"missing credentials: {HOW_TO_AUTHENTICATE}")
    if len(values) > 1:
        raise AuthenticationFailed(f"{len(values)} authorization metadata entries: send exactly one")
    value = values[0] if isinstance(values[0], str) else values[0].decode("latin-1")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(f"the authorization metadata is not `Bearer <token>`: {HOW_TO_AUTHENTICATE}")
    return token.strip()


class CallIdentity(Protocol):
    """Authenticates a call by what its transport knows (the client certificate), when the call runs."""

    def tenant_for(self, context: grpc.aio.ServicerContext) -> str:
        """The caller's tenant; ``AuthenticationFailed`` when the transport proves no known identity."""
        ...


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates each call (health excepted) and binds its tenant for the handler.

    ``verifier`` checks bearer tokens; ``identity`` (mutual TLS) names the tenant from the client
    certificate instead. ``blocking``: the verifier may do I/O (JWKS), so it runs on a thread.
    """

    def __init__(
        self, verifier: Verifier | None = None, *, identity: CallIdentity | None = None, blocking: bool = False
    ) -> None:
        if (verifier is None) == (identity is None):
            raise ValueError("AuthInterceptor needs exactly one of a token verifier and a call identity")
        self.verifier = verifier
        self.identity = identity
        self.blocking = blocking

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        if self.identity is not None:
            return _with_tenant(handler, self.identity.tenant_for, method)
        assert self.verifier is not None
        metadata = handler_call_details.invocation_metadata  # type: ignore[attr-defined]
        try:
            if self.blocking:
                tenant = await asyncio.to_thread(authenticate, self.verifier, metadata)
            else:
                tenant = authenticate(self.verifier, metadata)
        except AuthenticationFailed as exc:
            logger.info("%s refused: %s", method, exc.reason)
            metrics.ERRORS.labels(code="UNAUTHENTICATED").inc()
            return _refusing(handler, grpc.StatusCode.UNAUTHENTICATED, exc.reason)
        except VerifierUnavailable as exc:
            logger.warning("%s: cannot check the token: %s", method, exc.reason)
            metrics.ERRORS.labels(code="UNAVAILABLE").inc()
            return _refusing(handler, grpc.StatusCode.UNAVAILABLE, exc.reason)
        return _with_tenant(handler, lambda _context: tenant, method)


def _refusing(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, reason: str) -> grpc.RpcMethodHandler:
    def wrap(_: Behavior, streams: bool) -> Behavior:
        if streams:

            async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await context.abort(code, reason)
                yield  # pragma: no cover - abort raises

            return refuse_stream

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(code, reason)

        return refuse

    return rebuild_handler(handler, wrap)


def _with_tenant(
    handler: grpc.RpcMethodHandler, tenant_for: Callable[[grpc.aio.ServicerContext], str], method: str
) -> grpc.RpcMethodHandler:
    # The tenant is bound inside the call's own task (the behavior), where the handler and the tasks it
    # starts will look for it; each shape is kept, as in the error interceptor.
    async def bind(context: grpc.aio.ServicerContext) -> None:
        try:
            set_tenant(tenant_for(context))
        except AuthenticationFailed as exc:
            logger.info("%s refused: %s", method, exc.reason)
            metrics.ERRORS.labels(code="UNAUTHENTICATED").inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.reason)

    def wrap(behavior: Behavior, _: bool) -> Behavior:
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await bind(context)
                async for response in behavior(request, context):
                    yield response

            return stream
        if inspect.iscoroutinefunction(behavior):

            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await bind(context)
                return await behavior(request, context)

            return call
        raise TypeError(f"{behavior!r} is synchronous: the auth interceptor serves grpc.aio handlers only")

    return rebuild_handler(handler, wrap)
