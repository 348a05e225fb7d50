"""Bearer-token verifiers: a token in, the caller's tenant out, or ``AuthenticationFailed`` with a safe reason.

A verifier is anything with ``verify(token) -> str`` (the tenant). Two come with the orchestrator:
static API keys, whose file holds only SHA-256 digests (a leaked file grants nothing), and JWTs
signed by an identity provider whose public key, issuer and audience are configured. A reason
given to the client says what to fix (expired, wrong audience) but never which key or check
nearly matched.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

# JWTs: the asymmetric algorithms a public key can check. HS256 is left out on purpose: with a
# public key configured it would let anyone who has the key (it is public) sign tokens.
JWT_ALGORITHMS = ("RS256", "ES256")
JWT_LEEWAY_SECONDS = 30


class AuthenticationFailed(Exception):
    """The token does not authenticate; ``reason`` is safe to show the caller."""

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


class ApiKeyVerifier:
    """Static API keys, stored as SHA-256 hex digests mapped to tenants."""

    def __init__(self, keys: list[ApiKey]) -> None:
        if not keys:
            raise AuthConfigError("the API keys file lists no keys: add {key_sha256, tenant} entries")
        self.keys = keys

    @classmethod
    def from_file(cls, path: Path) -> ApiKeyVerifier:
        """Reads ``{"keys": [{"key_sha256": "<64 hex>", "tenant": "acme"}]}`` (YAML or JSON)."""
        body = _load_mapping(path)
        entries = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise AuthConfigError(f'{path}: expected {{"keys": [{{"key_sha256": ..., "tenant": ...}}]}}')
        keys = []
        for index, entry in enumerate(entries):
            digest = entry.get("key_sha256") if isinstance(entry, dict) else None
            tenant = entry.get("tenant") if isinstance(entry, dict) else None
            if not isinstance(digest, str) or len(digest) != 64 or not isinstance(tenant, str) or not tenant:
                raise AuthConfigError(
                    f"{path}: keys[{index}] needs key_sha256 (64 hex characters: `printf %s KEY | sha256sum`) "
                    "and a non-empty tenant"
                )
            try:
                keys.append(ApiKey(bytes.fromhex(digest), tenant))
            except ValueError as exc:
                raise AuthConfigError(f"{path}: keys[{index}].key_sha256 is not hex") from exc
        return cls(keys)

    def verify(self, token: str) -> str:
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


class JwtVerifier:
    """JWTs signed with RS256 or ES256 by the configured key; ``exp`` is required, ``nbf`` honoured."""

    def __init__(self, public_key_pem: str, *, issuer: str, audience: str, tenant_claim: str = "tenant") -> None:
        if not issuer or not audience:
            raise AuthConfigError("JWT auth needs --jwt-issuer and --jwt-audience")
        try:
            # Parsed once here, so a bad key fails the start instead of every call.
            key = load_pem_public_key(public_key_pem.encode())
        except ValueError as exc:
            raise AuthConfigError(f"the JWT public key is not a PEM public key: {exc}") from exc
        if not isinstance(key, RSAPublicKey | EllipticCurvePublicKey):
            raise AuthConfigError(f"the JWT public key must be RSA (RS256) or EC (ES256), not {type(key).__name__}")
        self.key: RSAPublicKey | EllipticCurvePublicKey = key
        self.issuer = issuer
        self.audience = audience
        self.tenant_claim = tenant_claim

    @classmethod
    def from_file(cls, path: Path, *, issuer: str, audience: str, tenant_claim: str = "tenant") -> JwtVerifier:
        try:
            public_key = path.read_text()
        except OSError as exc:
            raise AuthConfigError(f"cannot read the JWT public key {path}: {exc.strerror}") from exc
        return cls(public_key, issuer=issuer, audience=audience, tenant_claim=tenant_claim)

    def verify(self, token: str) -> str:
        try:
            claims = jwt.decode(
                token,
                self.key,
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
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise AuthenticationFailed(f"the token lacks the {self.tenant_claim!r} claim (the tenant)")
        return tenant
