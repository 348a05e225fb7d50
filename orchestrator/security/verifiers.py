"""Bearer-token verifiers: a token in, the caller's tenant out, or ``AuthenticationFailed`` with a safe reason.

A verifier is anything with ``verify(token) -> str`` (the tenant). Two come with the orchestrator:
static API keys, whose file holds only SHA-256 digests (a leaked file grants nothing) and is re-read
when it changes on disk, and JWTs signed by an identity provider whose key (a PEM file, or the
provider's JWKS endpoint with keys picked by ``kid``), issuer and audience are configured. A reason
given to the client says what to fix (expired, wrong audience) but never which key or check
nearly matched. Every tenant a credential names is checked (``valid_tenant``): the auth-none tenant
``default`` can never be claimed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from orchestrator.security.tenant import valid_tenant

logger = logging.getLogger(__name__)

# JWTs: the asymmetric algorithms a public key can check. HS256 is left out on purpose: with a
# public key configured it would let anyone who has the key (it is public) sign tokens.
JWT_ALGORITHMS = ("RS256", "ES256")
JWT_LEEWAY_SECONDS = 30
DEFAULT_MAX_LIFETIME_SECONDS = 86_400.0
# The API keys file is looked at (one stat) at most this often.
KEYS_FILE_CHECK_SECONDS = 1.0
TENANT_RULE = "a non-empty tenant: 1-64 letters, digits, '.', '_' or '-', not `default`"


class AuthenticationFailed(Exception):
    """The token does not authenticate; ``reason`` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VerifierUnavailable(Exception):
    """The token cannot be checked now (the identity provider's keys are unreachable): UNAVAILABLE, retry."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthConfigError(ValueError):
    """A verifier's configuration (keys file, public key) is unusable; the message names what to fix."""


class Verifier(Protocol):
    def verify(self, token: str) -> str:
        """The tenant ``token`` belongs to; raises ``AuthenticationFailed`` otherwise."""
        ...


def _load_mapping(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise AuthConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        # YAML is a superset of JSON, so one parser reads both forms the flag accepts.
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AuthConfigError(f"{path} is neither YAML nor JSON: {exc}") from exc


@dataclass(frozen=True)
class ApiKey:
    digest: bytes  # sha256 of the key
    tenant: str


def load_api_keys(path: Path) -> list[ApiKey]:
    """Reads ``{"keys": [{"key_sha256": "<64 hex>", "tenant": "acme"}]}`` (YAML or JSON)."""
    body = _load_mapping(path)
    entries = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise AuthConfigError(f'{path}: expected {{"keys": [{{"key_sha256": ..., "tenant": ...}}]}}')
    keys = []
    for index, entry in enumerate(entries):
        digest = entry.get("key_sha256") if isinstance(entry, dict) else None
        tenant = valid_tenant(entry.get("tenant") if isinstance(entry, dict) else None)
        if not isinstance(digest, str) or len(digest) != 64 or tenant is None:
            raise AuthConfigError(
                f"{path}: keys[{index}] needs key_sha256 (64 hex characters: `printf %s KEY | sha256sum`) "
                f"and {TENANT_RULE}"
            )
        try:
            keys.append(ApiKey(bytes.fromhex(digest), tenant))
        except ValueError as exc:
            raise AuthConfigError(f"{path}: keys[{index}].key_sha256 is not hex") from exc
    if not keys:
        raise AuthConfigError("the API keys file lists no keys: add {key_sha256, tenant} entries")
    return keys


class ApiKeyVerifier:
    """Static API keys, stored as SHA-256 hex digests mapped to tenants; the file is re-read when it changes.

    A change is noticed at the next call after ``KEYS_FILE_CHECK_SECONDS`` (its modification time or
    size differs): a revoked key stops working without a restart. A file caught half-written, or
    broken, is logged and the previous keys stay in force, as with the TLS files.
    """

    def __init__(self, keys: list[ApiKey], path: Path | None = None) -> None:
        if not keys:
            raise AuthConfigError("the API keys file lists no keys: add {key_sha256, tenant} entries")
        self.keys = keys
        self.path = path
        self.reloads = 0
        self._lock = threading.Lock()
        self._stamp = self._stat() if path is not None else None
        self._checked = time.monotonic()

    @classmethod
    def from_file(cls, path: Path) -> ApiKeyVerifier:
        return cls(load_api_keys(path), path)

    def _stat(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            status = self.path.stat()
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size

    def _reload_if_changed(self) -> None:
        if self.path is None or time.monotonic() - self._checked < KEYS_FILE_CHECK_SECONDS:
            return
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._stat()
            if stamp is None or stamp == self._stamp:
                return
            try:
                keys = load_api_keys(self.path)
            except AuthConfigError as exc:
                logger.warning("the API keys file changed but cannot be loaded (%s); keeping the previous keys", exc)
                return
            self.keys, self._stamp = keys, stamp
            self.reloads += 1
            logger.info("API keys reloaded from %s (%d keys)", self.path, len(keys))

    def verify(self, token: str) -> str:
        self._reload_if_changed()
        offered = hashlib.sha256(token.encode()).digest()
        tenant = None
        # Every entry is compared, in constant time each, so the time taken says nothing about which
        # key (or how much of one) matched.
        for key in self.keys:
            if hmac.compare_digest(offered, key.digest):
                tenant = key.tenant
        if tenant is None:
            raise AuthenticationFailed("the API key is not valid")
        return tenant


PublicKey = RSAPublicKey | EllipticCurvePublicKey
KeySource = Callable[[str], Any]  # token -> the key that must have signed it


def pem_key_source(public_key_pem: str) -> KeySource:
    try:
        # Parsed once here, so a bad key fails the start instead of every call.
        key = load_pem_public_key(public_key_pem.encode())
    except ValueError as exc:
        raise AuthConfigError(f"the JWT public key is not a PEM public key: {exc}") from exc
    if not isinstance(key, RSAPublicKey | EllipticCurvePublicKey):
        raise AuthConfigError(f"the JWT public key must be RSA (RS256) or EC (ES256), not {type(key).__name__}")
    return lambda _token: key


def jwks_key_source(url: str, *, lifespan_seconds: float = 300.0, cooldown_seconds: float = 30.0) -> KeySource:
    """Keys from the identity provider's JWKS endpoint, chosen by the token's ``kid`` (PyJWT's ``PyJWKClient``).

    The key set is cached for ``lifespan_seconds``; a ``kid`` not in it (the provider rotated its keys)
    fetches the set again, at most once per ``cooldown_seconds``, so tokens with made-up ``kid``s cannot
    make this server hammer the provider. An unreachable endpoint is ``VerifierUnavailable``.
    """
    if not url.startswith(("https://", "http://")):
        raise AuthConfigError(f"--jwt-jwks-url must be an http(s) URL, not {url!r}")
    client = jwt.PyJWKClient(
        url, cache_keys=False, lifespan=lifespan_seconds, timeout=5, cooldown_duration=cooldown_seconds
    )

    def key_for(token: str) -> Any:
        try:
            return client.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            raise VerifierUnavailable(f"cannot fetch the identity provider's keys ({url}); retry shortly") from exc
        except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
            raise AuthenticationFailed("the token is not valid") from exc

    return key_for


class JwtVerifier:
    """JWTs signed with RS256 or ES256 by the configured key; ``exp`` is required, ``nbf`` honoured.

    A token may live at most ``max_lifetime_seconds`` (``exp - iat``, or ``exp - now`` without ``iat``):
    a stolen long-lived token is worth little. Its tenant claim must be a valid tenant name.
    """

    def __init__(
        self,
        key_source: KeySource | str,
        *,
        issuer: str,
        audience: str,
        tenant_claim: str = "tenant",
        max_lifetime_seconds: float = DEFAULT_MAX_LIFETIME_SECONDS,
    ) -> None:
        """``key_source``: the signing key for a token (``jwks_key_source``), or a PEM public key."""
        if not issuer or not audience:
            raise AuthConfigError("JWT auth needs --jwt-issuer and --jwt-audience")
        if isinstance(key_source, str):
            key_source = pem_key_source(key_source)
        if max_lifetime_seconds <= 0:
            raise AuthConfigError("--jwt-max-lifetime-seconds must be > 0")
        self.key_for = key_source
        self.issuer = issuer
        self.audience = audience
        self.tenant_claim = tenant_claim
        self.max_lifetime_seconds = max_lifetime_seconds

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> JwtVerifier:
        try:
            public_key = path.read_text()
        except OSError as exc:
            raise AuthConfigError(f"cannot read the JWT public key {path}: {exc.strerror}") from exc
        return cls(pem_key_source(public_key), **kwargs)

    def verify(self, token: str) -> str:
        try:
            claims = jwt.decode(
                token,
                self.key_for(token),
                algorithms=list(JWT_ALGORITHMS),
                issuer=self.issuer,
                audience=self.audience,
                leeway=JWT_LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationFailed("the token has expired; get a new one") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthenticationFailed("the token is not valid yet (nbf/iat in the future)") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthenticationFailed(f"the token's audience is wrong; it must be {self.audience!r}") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthenticationFailed(f"the token's issuer is wrong; it must be {self.issuer!r}") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(f"the token lacks the {exc.claim!r} claim") from exc
        except jwt.PyJWTError as exc:
            # Bad signature, wrong algorithm, malformed: one reason for all, nothing to probe with.
            raise AuthenticationFailed("the token is not valid") from exc
        issued = claims.get("iat")
        start = issued if isinstance(issued, int | float) else time.time()
        if claims["exp"] - start > self.max_lifetime_seconds + JWT_LEEWAY_SECONDS:
            raise AuthenticationFailed(
                f"the token lives longer than this server accepts ({self.max_lifetime_seconds:g} s from iat to "
                "exp); get a shorter-lived one"
            )
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise AuthenticationFailed(f"the token lacks the {self.tenant_claim!r} claim (the tenant)")
        if valid_tenant(tenant) is None:
            raise AuthenticationFailed(f"the token's {self.tenant_claim!r} claim is not a tenant this server accepts")
        return tenant
