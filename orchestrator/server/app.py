"""The orchestrator's gRPC server: ``minmo.v1.MinMo`` plus standard health checking and reflection.

``build_server`` assembles a server around any servicer (tests pass their own); ``serve`` is the
process: shared clients, handlers, the readiness monitor, and the drain on SIGTERM
(``orchestrator.server.drain``: readiness NOT_SERVING, new calls refused, every Converse session ended
with UNAVAILABLE and told to resume elsewhere, the process gone within ``--drain-seconds``).

Health, reflection and the API share one port, and with ``tls`` one set of (reloadable) credentials.
With a verifier every call but health checking needs a token (``orchestrator.security.interceptor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import replace

import grpc
import grpc.aio
import redis
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from minmo.v1 import minmo_pb2_grpc

from orchestrator.observability.metrics import MetricsServer
from orchestrator.observability.tracing import Tracing, configure_tracing, server_interceptors
from orchestrator.security.interceptor import AuthInterceptor
from orchestrator.security.tls import TlsConfigError, TlsFiles, server_credentials
from orchestrator.security.verifiers import AuthConfigError, Verifier
from orchestrator.server.bounds_config import BoundsConfigError, check_bounds, server_options
from orchestrator.server.contracts import SERVICE_NAME, ServerDeps, ServeSettings
from orchestrator.server.drain import drain
from orchestrator.server.health import ReadinessMonitor, not_serving_until_checked, redis_probe, triton_probe
from orchestrator.server.interceptor import DomainErrorInterceptor
from orchestrator.server.routing_config import RoutingConfigError, build_routing
from orchestrator.server.security_config import (
    build_admission,
    build_auth,
    build_redis_client,
    build_triton_models,
    tls_files,
)
from orchestrator.server.tokenizer_config import TokenizerConfigError, load_serving_tokenizer
from orchestrator.server.wiring import build_servicer
from orchestrator.state.store import SessionStore

logger = logging.getLogger(__name__)


class ServeError(RuntimeError):
    """The server could not start; the message says why and what to do."""


def build_server(
    servicer: minmo_pb2_grpc.MinMoServicer,
    *,
    port: int,
    health_servicer: health.aio.HealthServicer,
    host: str = "[::]",
    tracing: Tracing | None = None,
    verifier: Verifier | None = None,
    tls: TlsFiles | None = None,
    settings: ServeSettings | None = None,
    auth: AuthInterceptor | None = None,
) -> grpc.aio.Server:
    """A server (not started) with the MinMo service, health and reflection, bound to ``host:port``.

    ``verifier``: calls need a bearer token (health excepted), or ``auth``: any authentication
    interceptor (``--auth mtls``); ``tls``: the port speaks TLS only;
    ``settings``: the connection bounds (keepalive, idle and age limits, the cap on concurrent calls).
    """
    # The tracing interceptor comes first, so a call's span sees the status the error interceptor sets,
    # and a refused token too (authentication runs before the handler and its error mapping).
    settings = settings or ServeSettings()
    if auth is None and verifier is not None:
        auth = AuthInterceptor(verifier)
    interceptors = [*server_interceptors(tracing), *([auth] if auth else []), DomainErrorInterceptor()]
    server = grpc.aio.server(
        interceptors=interceptors,
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    minmo_pb2_grpc.add_MinMoServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{host}:{port}"
    try:
        bound = server.add_secure_port(address, server_credentials(tls)) if tls else server.add_insecure_port(address)
    except TlsConfigError as exc:
        raise ServeError(str(exc)) from exc
    except RuntimeError as exc:
        raise ServeError(f"cannot listen on {address} ({exc}): is the port taken? (`ss -ltnp`)") from exc
    if bound == 0:
        raise ServeError(f"cannot listen on {address}: is the port taken? (`ss -ltnp`)")
    return server


async def serve(settings: ServeSettings) -> None:
    """Run one orchestrator process until SIGTERM or SIGINT."""
    try:
        check_bounds(settings)
        auth = build_auth(settings)
        tls = tls_files(settings)
    except (AuthConfigError, TlsConfigError, BoundsConfigError) as exc:
        raise ServeError(str(exc)) from exc
    tracing = configure_tracing(settings.trace_file, settings.otlp_endpoint)
    metrics: MetricsServer | None = None
    if settings.metrics_port is not None:
        try:
            metrics = MetricsServer(settings.metrics_port)
        except OSError as exc:
            raise ServeError(f"cannot serve metrics on port {settings.metrics_port} ({exc}): is it taken?") from exc
    try:
        redis_client = build_redis_client(settings)
        triton = build_triton_models(settings)
        admission = build_admission(settings, redis_client)
        routing = build_routing(
            settings,
            redis_client,
            lambda address: build_triton_models(replace(settings, triton_url=address)),
            session_ttl_seconds=SessionStore(redis_client).ttl_seconds,  # a pin lives as long as its session
        )
        tokenizer = load_serving_tokenizer(settings.tokenizer_dir)
    except (AuthConfigError, RoutingConfigError, TokenizerConfigError) as exc:
        raise ServeError(str(exc)) from exc
    server: grpc.aio.Server | None = None
    try:
        health_servicer = health.aio.HealthServicer()
        await not_serving_until_checked(health_servicer)
        deps = ServerDeps(settings, triton, redis_client, admission, routing=routing, tokenizer=tokenizer)
        servicer = build_servicer(deps)
        server = build_server(
            servicer,
            port=settings.port,
            health_servicer=health_servicer,
            host=settings.host,
            tracing=tracing,
            auth=auth,
            tls=tls,
            settings=settings,
        )
        monitor = ReadinessMonitor(
            health_servicer,
            [triton_probe(triton) if routing is None else routing.readiness, redis_probe(redis_client)],
            settings.health_interval_seconds,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await server.start()
        logger.info(
            "orchestrator listening on %s:%d (%s, auth %s; Triton %s, Redis %s, at most %d sessions)",
            settings.host,
            settings.port,
            "plaintext" if tls is None else ("mutual TLS" if tls.client_ca else "TLS"),
            settings.auth,
            settings.triton_url if routing is None else "pools " + ", ".join(p.name for p in settings.triton_pools),
            settings.redis_url,
            settings.max_sessions,
        )
        async with asyncio.TaskGroup() as tasks:
            monitoring = tasks.create_task(monitor.run())
            await stop.wait()
            await drain(server, monitor, health_servicer, servicer, settings.drain_seconds)
            server = None
            monitoring.cancel()
        logger.info("stopped")
    finally:
        if server is not None:
            await server.stop(None)
        await admission.close()
        await triton.close()
        if routing is not None:
            await routing.close()
        with contextlib.suppress(redis.RedisError, OSError):
            await redis_client.aclose()
        if metrics is not None:
            metrics.close()
        if tracing is not None:
            tracing.close()
