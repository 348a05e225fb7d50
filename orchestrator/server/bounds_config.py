"""``minmo serve``'s bounds: how long a client may wait to speak, stay idle or connected, and what it may hold.

Flags (this module imports nothing heavy, so the CLI parses arguments without loading gRPC), their
checks, and the gRPC server options they become. docs/operations-bounds.md is the operator's manual.

Why each server option:

* keepalive pings (``--keepalive-seconds``, ``--keepalive-timeout-seconds``): a client whose network
  drops silently never closes its call; without pings the call, its session slot and its session's
  owner lease live forever, so the client's own resume is refused as "live on another connection".
  With them the transport is closed within ``keepalive + timeout`` seconds and the lease is released.
* ``grpc.max_connection_idle_ms``: a connection with no call for this long is closed (GOAWAY).
* ``grpc.max_connection_age_ms`` (+ grace): connections are recycled, so a client that opened one
  long ago does not pin this replica forever; calls open at that moment get a grace as long as the
  longest allowed session, so no conversation is cut by it.
* ``maximum_concurrent_rpcs``: every call counts, health ``Watch`` streams and reflection included;
  past it gRPC itself answers RESOURCE_EXHAUSTED, before any handler runs.
* ``grpc.max_concurrent_streams``: calls per connection, so one client cannot take the whole cap
  through one connection without the server noticing.
"""

from __future__ import annotations

import argparse
from typing import Any

BOUND_SETTING_NAMES = (
    "drain_seconds",
    "first_event_seconds",
    "session_idle_seconds",
    "session_max_seconds",
    "max_queued_events",
    "keepalive_seconds",
    "keepalive_timeout_seconds",
    "connection_idle_seconds",
    "connection_max_age_seconds",
    "max_concurrent_rpcs",
    "redis_timeout_seconds",
    "redis_retries",
    "session_speech_mb",
    "tenant_speech_mb",
)
MAX_STREAMS_PER_CONNECTION = 128


class BoundsConfigError(ValueError):
    """A bound flag has a value that cannot work; the message says which and why."""


def add_bounds_flags(parser: argparse.ArgumentParser) -> None:
    calls = parser.add_argument_group("bounds on calls (see docs/operations-bounds.md)")
    calls.add_argument(
        "--drain-seconds",
        "--grace",  # the older name; the same setting
        dest="drain_seconds",
        type=float,
        default=20.0,
        help="on SIGTERM: readiness NOT_SERVING, new calls refused, Converse sessions told to resume elsewhere "
        "(UNAVAILABLE), other calls get this long to finish; the process exits within it (default 20)",
    )
    calls.add_argument(
        "--first-event-seconds", type=float, default=10.0, help="a streaming call's first message must arrive within"
    )
    calls.add_argument(
        "--session-idle-seconds",
        type=float,
        default=300.0,
        help="a Converse call with no client event (and no response playing) for this long ends (resumable)",
    )
    calls.add_argument(
        "--session-max-seconds", type=float, default=3600.0, help="longest Converse call; then it ends (resumable)"
    )
    calls.add_argument(
        "--max-queued-events",
        type=int,
        default=256,
        help="server events a Converse call may have waiting for a client that does not read; then it is cut off",
    )
    calls.add_argument(
        "--max-concurrent-rpcs", type=int, default=256, help="calls of any kind at once, health included"
    )
    network = parser.add_argument_group("connections")
    network.add_argument("--keepalive-seconds", type=float, default=10.0, help="ping an idle transport this often")
    network.add_argument(
        "--keepalive-timeout-seconds", type=float, default=5.0, help="close a transport whose ping is not answered"
    )
    network.add_argument(
        "--connection-idle-seconds", type=float, default=600.0, help="close a connection without calls"
    )
    network.add_argument("--connection-max-age-seconds", type=float, default=3600.0, help="recycle connections")
    store = parser.add_argument_group("Redis")
    store.add_argument("--redis-timeout-seconds", type=float, default=2.0, help="socket and connect timeout")
    store.add_argument("--redis-retries", type=int, default=2, help="retries of a command that timed out or failed")
    store.add_argument(
        "--session-speech-mb", type=float, default=128.0, help="stored speech embeddings per session (0: unlimited)"
    )
    store.add_argument(
        "--tenant-speech-mb", type=float, default=0.0, help="stored speech embeddings per tenant (0: unlimited)"
    )


def bounds_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ServeSettings`` fields the flags above set."""
    return {name: getattr(args, name) for name in BOUND_SETTING_NAMES}


def check_bounds(settings: Any) -> None:
    """Refuse values that would switch a bound off by accident (0 or negative); 0 means unlimited only for quotas."""
    positive = [name for name in BOUND_SETTING_NAMES if not name.endswith("_mb") and name != "redis_retries"]
    bad = [name for name in positive if getattr(settings, name) <= 0]
    if settings.redis_retries < 0 or settings.session_speech_mb < 0 or settings.tenant_speech_mb < 0:
        bad.append("redis_retries / *_speech_mb (must be >= 0)")
    if bad:
        flags = ", ".join("--" + name.replace("_", "-") for name in bad)
        raise BoundsConfigError(f"{flags}: must be > 0 (a bound of 0 would never end anything)")


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def server_options(settings: Any) -> list[tuple[str, Any]]:
    """The gRPC server's channel arguments for ``settings`` (a ``ServeSettings``)."""
    return [
        # Without this gRPC binds with SO_REUSEPORT, and a second server on a taken port starts silently.
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", _ms(settings.keepalive_seconds)),
        ("grpc.keepalive_timeout_ms", _ms(settings.keepalive_timeout_seconds)),
        # gRPC core waits for a ping's ack this long (60 s by default), whatever the keepalive timeout says.
        ("grpc.http2.ping_timeout_ms", _ms(settings.keepalive_timeout_seconds)),
        # Ping connections that have no call too: a client that dropped silently between calls is noticed.
        ("grpc.keepalive_permit_without_calls", 1),
        # Clients may ping as often as the server does; more often is a ping flood and is answered with GOAWAY.
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(min(settings.keepalive_seconds, 10.0))),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_idle_ms", _ms(settings.connection_idle_seconds)),
        ("grpc.max_connection_age_ms", _ms(settings.connection_max_age_seconds)),
        ("grpc.max_connection_age_grace_ms", _ms(settings.session_max_seconds + settings.drain_seconds)),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
    ]
