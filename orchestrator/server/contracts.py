"""What the gRPC shell needs from the domain code, and what it gives the domain code to build it.

``MinMoServicer`` only decodes, delegates and encodes; the work happens in handlers written against
these Protocols. A process builds each handler from ``ServerDeps`` with a builder function
(``build_converse_handler(deps)`` and so on), registered in ``orchestrator.server.wiring``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import grpc.aio
import redis.asyncio
from minmo.v1 import minmo_pb2

from orchestrator.limits.admission import Admission
from orchestrator.routing.pools import PoolSpec
from orchestrator.triton.client import TritonModels

if TYPE_CHECKING:
    from minmo_contracts.tokenizer import Tokenizer
    from orchestrator.routing.sessions import SessionRouting

SERVICE_NAME = "minmo.v1.MinMo"


@dataclass(frozen=True)
class ServeSettings:
    """How one orchestrator process runs (``minmo serve`` flags)."""

    port: int = 50051
    host: str = "[::]"
    triton_url: str = "127.0.0.1:8001"
    redis_url: str = "redis://127.0.0.1:6379/0"
    max_sessions: int = 16
    # On SIGTERM (the drain): readiness NOT_SERVING and new calls refused at once, every Converse session
    # told to resume elsewhere (UNAVAILABLE), the other calls in flight given the rest of this to finish.
    drain_seconds: float = 20.0
    health_interval_seconds: float = 2.0
    # Observability: Prometheus /metrics on this port (None: off); spans to a JSON-lines file and/or OTLP.
    metrics_port: int | None = None
    trace_file: Path | None = None
    otlp_endpoint: str | None = None
    # Transport security and authentication (orchestrator.server.security_config reads these).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set: mutual TLS, clients need a certificate from this CA
    auth: str = "none"  # none | api-keys | jwt
    api_keys_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_public_key_file: Path | None = None
    jwt_tenant_claim: str = "tenant"
    # Limits: per tenant across replicas (0 = unlimited); new sessions are shed beyond this event loop lag.
    tenant_max_sessions: int = 0
    tenant_audio_seconds_per_minute: float = 0.0
    shed_loop_lag_seconds: float = 0.25
    # Credentials and TLS of the dependencies.
    redis_password_file: Path | None = None
    redis_tls: bool = False
    redis_ca: Path | None = None
    triton_ssl: bool = False
    triton_root_certs: Path | None = None
    triton_deadline_seconds: float = 10.0
    # Routing (orchestrator.routing.pools): with pools, each session is pinned to one pod per pool and
    # ``triton_url`` is not used. ``namespace``: of the k8s: pool Services (None: the pod's own).
    triton_pools: tuple[PoolSpec, ...] = ()
    namespace: str | None = None
    # Backbone weights folder with tokenizer.json; None: the smoke byte tokenizer.
    tokenizer_dir: Path | None = None
    # Speculative responses (orchestrator.converse.speculation): the default of sessions that do not say,
    # and what sets a turn's end point: a silence, or a respond-now probability.
    speculation: bool = True
    speculation_silence_ms: int = 240
    speculation_start: float = 0.2
    # Respond only after this much silence since the user's last speech (0: the predictor alone decides).
    respond_min_silence_ms: int = 0
    # Bounds on what a client can make the server hold (orchestrator.server.bounds_config; docs/operations-bounds.md).
    first_event_seconds: float = 10.0
    session_idle_seconds: float = 300.0
    session_max_seconds: float = 3600.0
    max_queued_events: int = 256
    keepalive_seconds: float = 10.0
    keepalive_timeout_seconds: float = 5.0
    connection_idle_seconds: float = 600.0
    connection_max_age_seconds: float = 3600.0
    max_concurrent_rpcs: int = 256
    redis_timeout_seconds: float = 2.0
    redis_retries: int = 2
    session_speech_mb: float = 128.0
    tenant_speech_mb: float = 0.0
    # Identity beyond the basics: JWKS keys by `kid`, a longest JWT lifetime, mTLS identities -> tenants.
    jwt_jwks_url: str | None = None
    jwt_max_lifetime_seconds: float = 86_400.0
    mtls_tenants_file: Path | None = None


@dataclass(frozen=True)
class ServerDeps:
    """Shared clients of one process, owned (and closed) by ``serve``; builders must not close them."""

    settings: ServeSettings
    triton: TritonModels
    redis: redis.asyncio.Redis
    admission: Admission | None = None
    # Set with --triton-pool: sessions and tasks take their models from it instead of ``triton``.
    routing: SessionRouting | None = None
    tokenizer: Tokenizer | None = None  # None: the smoke byte tokenizer


class ConverseHandler(Protocol):
    """One full-duplex session per call; ends the stream when the client ends or the session fails."""

    def converse(
        self, events: AsyncIterator[minmo_pb2.ClientEvent], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.ServerEvent]: ...


class TranscribeHandler(Protocol):
    """Config first, then audio; yields transcript deltas, the last one with ``final``."""

    def transcribe(
        self, requests: AsyncIterator[minmo_pb2.TranscribeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.TranscribeResponse]: ...


class SynthesizeHandler(Protocol):
    """Text and instruction in; 24 kHz PCM16 chunks out, sequence numbered from 0."""

    def max_audio_seconds(self, request: minmo_pb2.SynthesizeRequest) -> float:
        """The most audio the request can produce; InvalidArgument for a request the call would refuse."""
        ...

    def synthesize(
        self, request: minmo_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[minmo_pb2.SynthesizeResponse]: ...


class SessionReader(Protocol):
    """Reads and deletes sessions; both raise ``orchestrator.errors.NotFound`` for an unknown id."""

    async def get(self, session_id: str) -> minmo_pb2.Session: ...

    async def delete(self, session_id: str) -> None: ...
