"""An in-process orchestrator (real gRPC server over loopback) on the real Triton and Redis.

By default it is the local stack's shape: plaintext, ``--auth none``, no limits. Tests of security
pass a ``verifier`` (token auth), ``tls`` files (with ``channel_credentials`` for the fixture's own
channel), ``tenant_limits`` and/or ``shedding`` (capacity = ``max_sessions``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio
from minmo.v1 import minmo_pb2_grpc

from orchestrator.converse.handler import ConverseService
from orchestrator.devstack.triton_launcher import free_port
from orchestrator.limits.admission import Admission
from orchestrator.limits.shedding import LoadShedder
from orchestrator.limits.tenants import TenantLimits, TenantLimitSettings
from orchestrator.observability.metrics import MetricsServer
from orchestrator.observability.tracing import configure_tracing, server_interceptors
from orchestrator.security.interceptor import AuthInterceptor
from orchestrator.security.tls import TlsFiles, server_credentials
from orchestrator.security.verifiers import Verifier
from orchestrator.server.interceptor import DomainErrorInterceptor
from orchestrator.server.servicer import MinMoServicer
from orchestrator.server.sessions import StoreSessionReader
from orchestrator.state.store import SessionStore
from orchestrator.tasks.handlers import SynthesizeService, TranscribeService
from orchestrator.tasks.synthesize import Synthesizer
from orchestrator.tasks.transcribe import Transcriber
from orchestrator.triton.client import TritonModels
from tests.integration.helpers import delete_matching


@dataclass
class Orchestrator:
    address: str
    store: SessionStore
    service: ConverseService
    server: grpc.aio.Server
    channel: grpc.aio.Channel
    metrics_url: str | None = None
    admission: Admission | None = None
    prefix: str = ""


@asynccontextmanager
async def running_orchestrator(
    triton_url: str,
    *,
    prefix: str | None = None,
    max_sessions: int = 8,
    lease_seconds: float = 2.0,
    trace_file: Path | None = None,
    metrics: bool = False,
    verifier: Verifier | None = None,
    tls: TlsFiles | None = None,
    channel_credentials: grpc.ChannelCredentials | None = None,
    tenant_limits: TenantLimitSettings | None = None,
    shedding: bool = False,
    max_loop_lag_seconds: float = 0.25,
    converse_options: dict[str, Any] | None = None,
    first_event_seconds: float = 10.0,
    store_options: dict[str, Any] | None = None,
) -> AsyncIterator[Orchestrator]:
    """``trace_file`` adds a JSON-lines exporter to the process's tracing; ``metrics`` serves /metrics.

    ``converse_options`` (idle and call limits, outbox bound), ``first_event_seconds`` and ``store_options``
    (speech quotas) set the bounds of issue 13.
    """
    tracing = configure_tracing(trace_file)
    metrics_server = MetricsServer(free_port(), "127.0.0.1") if metrics else None
    client = redis.asyncio.Redis(host="127.0.0.1", port=6379)
    prefix = prefix or f"test-{uuid.uuid4().hex[:8]}:"
    store = SessionStore(client, prefix=prefix, lease_seconds=lease_seconds, **(store_options or {}))
    models = TritonModels(triton_url)
    admission: Admission | None = None
    if tenant_limits is not None or shedding:
        admission = Admission(
            LoadShedder(max_sessions, max_loop_lag_seconds=max_loop_lag_seconds) if shedding else None,
            TenantLimits(client, tenant_limits, prefix=prefix) if tenant_limits is not None else None,
        )
    meter = admission.charge_audio if admission is not None else None
    service = ConverseService(models, store, max_sessions=max_sessions, audio_meter=meter, **(converse_options or {}))
    auth = [AuthInterceptor(verifier)] if verifier is not None else []
    server = grpc.aio.server(interceptors=[*server_interceptors(tracing), *auth, DomainErrorInterceptor()])
    servicer = MinMoServicer(
        converse=service,
        transcribe=TranscribeService(Transcriber(models)),
        synthesize=SynthesizeService(Synthesizer(models)),
        sessions=StoreSessionReader(store),
        admission=admission,
        first_event_seconds=first_event_seconds,
    )
    minmo_pb2_grpc.add_MinMoServicer_to_server(servicer, server)
    port = free_port()
    if tls is not None:
        server.add_secure_port(f"127.0.0.1:{port}", server_credentials(tls))
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    if channel_credentials is not None:
        # The test certificates name localhost, so the channel's target does too.
        channel = grpc.aio.secure_channel(f"localhost:{port}", channel_credentials)
    else:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        metrics_url = f"http://127.0.0.1:{metrics_server.port}/metrics" if metrics_server else None
        yield Orchestrator(f"127.0.0.1:{port}", store, service, server, channel, metrics_url, admission, prefix)
    finally:
        await channel.close()
        await server.stop(grace=1)
        await models.close()
        if admission is not None:
            await admission.close()
        await delete_matching(client, f"{prefix}*")
        await client.aclose()
        if metrics_server is not None:
            metrics_server.close()
        if tracing is not None:
            tracing.close()
