"""The objects ``minmo serve``'s security and limit flags configure (``orchestrator.server.flags``).

Each builder validates its inputs at start, so a missing key file or a half-set TLS pair fails
``minmo serve`` with a message instead of the first call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from orchestrator.limits.admission import Admission
from orchestrator.limits.shedding import LoadShedder
from orchestrator.limits.tenants import TenantLimits, TenantLimitSettings
from orchestrator.security.identities import CertificateTenants
from orchestrator.security.interceptor import AuthInterceptor
from orchestrator.security.tls import TlsFiles
from orchestrator.security.verifiers import ApiKeyVerifier, AuthConfigError, JwtVerifier, Verifier, jwks_key_source
from orchestrator.server.contracts import ServeSettings
from orchestrator.server.flags import AUTH_MODES
from orchestrator.triton.client import TritonModels


def tls_files(settings: ServeSettings) -> TlsFiles | None:
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise AuthConfigError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise AuthConfigError("TLS needs both --tls-cert and --tls-key")
    return TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


def build_verifier(settings: ServeSettings) -> Verifier | None:
    """The token verifier ``--auth`` names; None for ``none`` (every call is the default tenant) and ``mtls``."""
    if settings.auth in ("none", "mtls"):
        return None
    if settings.auth == "api-keys":
        if settings.api_keys_file is None:
            raise AuthConfigError("--auth api-keys needs --api-keys-file")
        return ApiKeyVerifier.from_file(settings.api_keys_file)
    if settings.auth == "jwt":
        keys = settings.jwt_public_key_file, settings.jwt_jwks_url
        if (keys[0] is None) == (keys[1] is None) or not settings.jwt_issuer or not settings.jwt_audience:
            raise AuthConfigError(
                "--auth jwt needs --jwt-issuer, --jwt-audience and one of --jwt-public-key-file and --jwt-jwks-url"
            )
        options: dict[str, Any] = {
            "issuer": settings.jwt_issuer,
            "audience": settings.jwt_audience,
            "tenant_claim": settings.jwt_tenant_claim,
            "max_lifetime_seconds": settings.jwt_max_lifetime_seconds,
        }
        if settings.jwt_jwks_url is not None:
            return JwtVerifier(jwks_key_source(settings.jwt_jwks_url), **options)
        assert settings.jwt_public_key_file is not None
        return JwtVerifier.from_file(settings.jwt_public_key_file, **options)
    raise AuthConfigError(f"--auth must be one of {', '.join(AUTH_MODES)}, not {settings.auth!r}")


def build_auth(settings: ServeSettings) -> AuthInterceptor | None:
    """The authentication interceptor ``--auth`` asks for; None for ``none``."""
    if settings.auth == "mtls":
        if settings.tls_client_ca is None or settings.mtls_tenants_file is None:
            raise AuthConfigError("--auth mtls needs --tls-client-ca (mutual TLS) and --mtls-tenants-file")
        return AuthInterceptor(identity=CertificateTenants.from_file(settings.mtls_tenants_file))
    verifier = build_verifier(settings)
    if verifier is None:
        return None
    return AuthInterceptor(verifier, blocking=settings.jwt_jwks_url is not None and settings.auth == "jwt")


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise AuthConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from exc


def build_redis_client(settings: ServeSettings) -> redis.asyncio.Redis:
    """The Redis client with the configured password and TLS (``--redis-tls`` upgrades redis:// to rediss://).

    Every command is bounded: a connect or a reply that takes longer than ``--redis-timeout-seconds``
    fails (a SIGSTOPped or partitioned Redis answers nothing, and without a socket timeout the call,
    and the session lock it holds, would wait forever), and is retried ``--redis-retries`` times with
    a short backoff (redis-py's ``Retry``), so one lost packet costs a retry, not the call. The worst
    case is about ``(retries + 1) * timeout`` plus the backoff: 6.3 s with the defaults.
    Our scripts may run twice after a lost reply: each is idempotent or only over-counts (audio).
    """
    url = settings.redis_url
    if settings.redis_tls and url.startswith("redis://"):
        url = "rediss://" + url.removeprefix("redis://")
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout_seconds,
        "socket_timeout": settings.redis_timeout_seconds,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), settings.redis_retries),
        "retry_on_error": [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        # A pooled connection idle this long is pinged before use: one left over from before a failover
        # (pointing at the old primary) is replaced instead of failing a session's write.
        "health_check_interval": 30,
    }
    if settings.redis_password_file is not None:
        options["password"] = _read_secret(settings.redis_password_file, "Redis password")
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        if settings.redis_ca is not None:
            options["ssl_ca_certs"] = str(settings.redis_ca)
    elif settings.redis_ca is not None:
        raise AuthConfigError("--redis-ca needs TLS to Redis: pass --redis-tls or a rediss:// URL")
    return redis.asyncio.Redis.from_url(url, **options)


def build_triton_models(settings: ServeSettings, **kwargs: Any) -> TritonModels:
    if settings.triton_root_certs is not None and not settings.triton_ssl:
        raise AuthConfigError("--triton-root-certs needs --triton-ssl")
    if settings.triton_deadline_seconds <= 0:
        raise AuthConfigError("--triton-deadline-seconds must be > 0")
    roots = str(settings.triton_root_certs) if settings.triton_root_certs is not None else None
    kwargs.setdefault("deadline_seconds", settings.triton_deadline_seconds)
    return TritonModels(settings.triton_url, ssl=settings.triton_ssl, root_certificates=roots, **kwargs)


def build_admission(settings: ServeSettings, client: redis.asyncio.Redis) -> Admission:
    limits = TenantLimitSettings(
        max_sessions=settings.tenant_max_sessions, audio_seconds_per_minute=settings.tenant_audio_seconds_per_minute
    )
    if limits.max_sessions < 0 or limits.audio_seconds_per_minute < 0:
        raise AuthConfigError("--tenant-max-sessions and --tenant-audio-seconds-per-minute must be >= 0")
    shedder = LoadShedder(settings.max_sessions, max_loop_lag_seconds=settings.shed_loop_lag_seconds)
    return Admission(shedder, TenantLimits(client, limits) if limits.enabled else None)
