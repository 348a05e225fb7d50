"""``minmo serve``'s flags for transport security, authentication, tenant limits, dependency credentials,
pool routing and the tokenizer.

They are the agreed contract (README, chart). This module imports nothing heavy, so the CLI parses
arguments without loading gRPC or Redis.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from orchestrator.routing.pools import FORMAT, PoolSpecError, parse_pool

AUTH_MODES = ("none", "api-keys", "jwt", "mtls")
# ServeSettings fields set by the flags below (argparse names them after the flags).
SETTING_NAMES = (
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "auth",
    "api_keys_file",
    "jwt_issuer",
    "jwt_audience",
    "jwt_public_key_file",
    "jwt_tenant_claim",
    "jwt_jwks_url",
    "jwt_max_lifetime_seconds",
    "mtls_tenants_file",
    "tenant_max_sessions",
    "tenant_audio_seconds_per_minute",
    "redis_password_file",
    "redis_tls",
    "redis_ca",
    "triton_ssl",
    "triton_root_certs",
    "triton_deadline_seconds",
)


def add_security_flags(parser: argparse.ArgumentParser) -> None:
    tls = parser.add_argument_group("transport security (PEM files; re-read when they change on disk)")
    tls.add_argument("--tls-cert", type=Path, help="server certificate chain; with --tls-key turns TLS on")
    tls.add_argument("--tls-key", type=Path, help="server private key")
    tls.add_argument("--tls-client-ca", type=Path, help="require client certificates from this CA (mutual TLS)")
    auth = parser.add_argument_group("authentication (clients send `authorization: Bearer <token>`)")
    auth.add_argument("--auth", choices=AUTH_MODES, default="none", help="token verifier (default: none)")
    auth.add_argument("--api-keys-file", type=Path, help='YAML/JSON {"keys": [{"key_sha256": HEX, "tenant": NAME}]}')
    auth.add_argument("--jwt-issuer", help="required `iss` of JWTs")
    auth.add_argument("--jwt-audience", help="required `aud` of JWTs")
    auth.add_argument("--jwt-public-key-file", type=Path, help="PEM public key (RSA: RS256, EC P-256: ES256)")
    auth.add_argument("--jwt-tenant-claim", default="tenant", help="the JWT claim naming the tenant")
    auth.add_argument(
        "--jwt-jwks-url", help="the identity provider's JWKS endpoint (keys by `kid`, rotated keys fetched again)"
    )
    auth.add_argument(
        "--jwt-max-lifetime-seconds", type=float, default=86_400.0, help="refuse JWTs living longer (exp - iat)"
    )
    auth.add_argument(
        "--mtls-tenants-file",
        type=Path,
        help='--auth mtls: YAML/JSON {"clients": [{"identity": SAN-or-CN, "tenant": NAME}]}',
    )
    limits = parser.add_argument_group("per-tenant limits (shared across replicas through Redis)")
    limits.add_argument("--tenant-max-sessions", type=int, default=0, help="concurrent sessions (0: unlimited)")
    limits.add_argument(
        "--tenant-audio-seconds-per-minute", type=float, default=0.0, help="audio seconds per minute (0: unlimited)"
    )
    deps = parser.add_argument_group("dependency credentials")
    deps.add_argument("--redis-password-file", type=Path, help="file holding the Redis password")
    deps.add_argument("--redis-tls", action="store_true", help="TLS to Redis (a rediss:// URL does the same)")
    deps.add_argument("--redis-ca", type=Path, help="CA bundle that signs Redis's certificate")
    deps.add_argument("--triton-ssl", action="store_true", help="TLS to Triton's gRPC")
    deps.add_argument("--triton-root-certs", type=Path, help="CA bundle that signs Triton's certificate")
    deps.add_argument(
        "--triton-deadline-seconds",
        type=float,
        default=10.0,
        help="longest wait for a Triton answer (a unary call, or a stream's next response) before the turn fails "
        "with UNAVAILABLE instead of hanging (default 10)",
    )


def security_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ServeSettings`` fields the flags above set."""
    return {name: getattr(args, name) for name in SETTING_NAMES}


ROUTING_SETTING_NAMES = ("triton_pools", "namespace", "tokenizer_dir")
TURN_TAKING_SETTING_NAMES = ("speculation", "speculation_silence_ms", "speculation_start", "respond_min_silence_ms")


def add_turn_taking_flags(parser: argparse.ArgumentParser) -> None:
    turns = parser.add_argument_group("turn taking (see docs/turn-taking.md)")
    turns.add_argument(
        "--speculation",
        choices=("on", "off"),
        default="on",
        help="start a response on a likely end of turn, held back until the decision (sessions may override)",
    )
    turns.add_argument(
        "--speculation-silence-ms",
        type=int,
        default=240,
        help="silence after the user's last voice that sets a turn's end point (where the turn is closed and a "
        "speculative response starts)",
    )
    turns.add_argument(
        "--speculation-start",
        type=float,
        default=0.2,
        help="or a respond-now probability above this",
    )
    turns.add_argument(
        "--respond-min-silence-ms",
        type=int,
        default=0,
        help="answer only after this much silence since the user's last speech: no answers inside short pauses, "
        "but a noisy line may then miss a turn (0: off; docs/turn-taking.md measures both)",
    )


def turn_taking_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ServeSettings`` fields the turn-taking flags set."""
    values = {name: getattr(args, name) for name in TURN_TAKING_SETTING_NAMES}
    values["speculation"] = values["speculation"] == "on"
    return values


def _pool(text: str) -> Any:
    try:
        return parse_pool(text)
    except PoolSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_routing_flags(parser: argparse.ArgumentParser) -> None:
    routing = parser.add_argument_group("Triton pools (without --triton-pool: every call goes to --triton)")
    routing.add_argument(
        "--triton-pool",
        dest="triton_pools",
        type=_pool,
        action="append",
        default=[],
        metavar="NAME=MODELS@TARGET",
        help=f"a pool of Triton pods ({FORMAT}); repeat it so that each of the five models is in exactly one "
        "pool; each session is pinned to one pod per pool (Redis)",
    )
    routing.add_argument(
        "--namespace",
        help="namespace of the k8s: pool Services (default: the pod's own, from its ServiceAccount)",
    )
    routing.add_argument(
        "--tokenizer",
        dest="tokenizer_dir",
        type=Path,
        help="backbone weights folder holding tokenizer.json (the real Qwen2.5 tokenizer); default: the smoke "
        "byte tokenizer",
    )


def routing_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ServeSettings`` fields the routing and tokenizer flags set."""
    values = {name: getattr(args, name) for name in ROUTING_SETTING_NAMES}
    values["triton_pools"] = tuple(values["triton_pools"])
    return values
