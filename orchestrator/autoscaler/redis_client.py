"""The autoscaler's Redis connection: the orchestrator's credentials (a password file, TLS and its CA), and
timeouts on every socket operation.

The password comes from a file, never the URL: a URL is a process argument, which anyone who can list
processes on the node (or read the pod spec) sees. redis-py retries a failed command three times with
backoff by default, and its connection handshake retries again inside each attempt: against a hung
Redis one call took four socket timeouts plus back-offs. Here nothing is retried, so a hung Redis
costs one socket timeout per round; the next round (an interval later) is the retry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from orchestrator.autoscaler.config import ConfigError

log = logging.getLogger(__name__)


def build_redis(
    url: str,
    *,
    password_file: Path | None = None,
    tls: bool = False,
    ca_file: Path | None = None,
    timeout_seconds: float = 5.0,
) -> Redis:
    """Raises ``ConfigError`` for a combination that cannot work, before any connection is made."""
    if tls and url.startswith("redis://"):
        url = "rediss://" + url.removeprefix("redis://")
    if not url.startswith(("redis://", "rediss://")):
        raise ConfigError(f"--redis must be a redis:// or rediss:// URL, got {url.split('://')[0]}://...")
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout_seconds,
        "socket_timeout": timeout_seconds,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 30,
    }
    if urlsplit(url).password:
        log.warning("the Redis URL carries a password, visible in the process list: use --redis-password-file")
    if password_file is not None:
        try:
            options["password"] = password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the Redis password file {password_file}: {exc.strerror}") from exc
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        if ca_file is not None:
            if not ca_file.is_file():
                raise ConfigError(f"--redis-ca {ca_file}: no such file (the CA bundle that signs Redis's certificate)")
            options["ssl_ca_certs"] = str(ca_file)
    elif ca_file is not None:
        raise ConfigError("--redis-ca needs TLS to Redis: pass --redis-tls or a rediss:// URL")
    return Redis.from_url(url, **options)
