"""Token verifiers: API keys from a file of digests, JWTs checked for signature, issuer, audience and time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from orchestrator.security.interceptor import authenticate
from orchestrator.security.verifiers import (
    JWT_LEEWAY_SECONDS,
    ApiKeyVerifier,
    AuthConfigError,
    AuthenticationFailed,
    JwtVerifier,
)

ISSUER = "https://id.example.test"
AUDIENCE = "minmo-serve"


def keys_file(tmp_path: Path, keys: dict[str, str], *, suffix: str = ".json") -> Path:
    path = tmp_path / f"keys{suffix}"
    entries = [
        {"key_sha256": hashlib.sha256(key.encode()).hexdigest(), "tenant": tenant} for key, tenant in keys.items()
    ]
    path.write_text(json.dumps({"keys": entries}))
    return path


def reason(verifier, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        verifier.verify(token)
    return caught.value.reason


def test_api_keys_map_to_their_tenants(tmp_path: Path) -> None:
    verifier = ApiKeyVerifier.from_file(keys_file(tmp_path, {"key-acme-1": "acme", "key-globex": "globex"}))
    assert verifier.verify("key-acme-1") == "acme"
    assert verifier.verify("key-globex") == "globex"
    assert reason(verifier, "key-acme-2") == "the API key is not valid"
    assert reason(verifier, "") == "the API key is not valid"


def test_api_keys_file_may_be_yaml(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"k1").hexdigest()
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  - key_sha256: {digest}\n    tenant: acme\n")
    assert ApiKeyVerifier.from_file(path).verify("k1") == "acme"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"keys": []}', "lists no keys"),
        ('{"keys": [{"key_sha256": "abc", "tenant": "acme"}]}', "64 hex characters"),
        ('{"keys": [{"key_sha256": "' + "z" * 64 + '", "tenant": "acme"}]}', "not hex"),
        ('{"keys": [{"key_sha256": "' + "a" * 64 + '"}]}', "non-empty tenant"),
        ("[1, 2]", "expected"),
    ],
)
def test_a_bad_keys_file_is_refused_at_start_with_what_to_fix(tmp_path: Path, body: str, fragment: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(body)
    with pytest.raises(AuthConfigError, match=fragment):
        ApiKeyVerifier.from_file(path)


def test_a_missing_keys_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match=r"keys\.json"):
        ApiKeyVerifier.from_file(tmp_path / "keys.json")


# ---- JWT ------------------------------------------------------------------------------------------------------


def pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_secret(body: dict[str, object], secret: bytes) -> str:
    """A token signed HS256 by hand (PyJWT itself refuses a PEM key as an HMAC secret)."""
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(body).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    body: dict[str, object] = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "iat": now, "tenant": "acme"}
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def test_rs256_and_es256_tokens_name_their_tenant(rsa_key, ec_key) -> None:
    rs = JwtVerifier(pem_public(rsa_key), issuer=ISSUER, audience=AUDIENCE)
    es = JwtVerifier(pem_public(ec_key), issuer=ISSUER, audience=AUDIENCE)
    assert rs.verify(jwt.encode(claims(), rsa_key, algorithm="RS256")) == "acme"
    assert es.verify(jwt.encode(claims(tenant="globex"), ec_key, algorithm="ES256")) == "globex"


def test_the_tenant_claim_is_configurable(rsa_key) -> None:
    verifier = JwtVerifier(pem_public(rsa_key), issuer=ISSUER, audience=AUDIENCE, tenant_claim="org")
    assert verifier.verify(jwt.encode(claims(org="initech"), rsa_key, algorithm="RS256")) == "initech"
    assert "'org' claim" in reason(verifier, jwt.encode(claims(), rsa_key, algorithm="RS256"))


def test_expiry_and_not_before_are_enforced_with_a_small_leeway(rsa_key) -> None:
    verifier = JwtVerifier(pem_public(rsa_key), issuer=ISSUER, audience=AUDIENCE)
    now = int(time.time())
    just_expired = jwt.encode(claims(exp=now - JWT_LEEWAY_SECONDS // 2), rsa_key, algorithm="RS256")
    assert verifier.verify(just_expired) == "acme"  # clock skew within the leeway is forgiven
    expired = jwt.encode(claims(exp=now - JWT_LEEWAY_SECONDS - 60), rsa_key, algorithm="RS256")
    assert reason(verifier, expired) == "the token has expired; get a new one"
    early = jwt.encode(claims(nbf=now + JWT_LEEWAY_SECONDS + 60), rsa_key, algorithm="RS256")
    assert "not valid yet" in reason(verifier, early)
    assert "'exp' claim" in reason(verifier, jwt.encode(claims(exp=None), rsa_key, algorithm="RS256"))


def test_wrong_audience_or_issuer_says_which(rsa_key) -> None:
    verifier = JwtVerifier(pem_public(rsa_key), issuer=ISSUER, audience=AUDIENCE)
    assert "audience is wrong" in reason(verifier, jwt.encode(claims(aud="other"), rsa_key, algorithm="RS256"))
    assert "issuer is wrong" in reason(verifier, jwt.encode(claims(iss="https://evil"), rsa_key, algorithm="RS256"))


def test_forged_tokens_get_one_reason_that_reveals_nothing(rsa_key, ec_key) -> None:
    verifier = JwtVerifier(pem_public(rsa_key), issuer=ISSUER, audience=AUDIENCE)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(), other_key, algorithm="RS256")
    # HS256 signed with the (public) key as the secret: the classic algorithm confusion.
    confused = hs256_with_secret(claims(), pem_public(rsa_key).encode())
    unsigned = jwt.encode(claims(), None, algorithm="none")
    for token in (forged, confused, unsigned, "not.a.jwt", "garbage"):
        assert reason(verifier, token) == "the token is not valid"


def test_a_bad_public_key_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="PEM public key"):
        JwtVerifier("not a key", issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(AuthConfigError, match="--jwt-issuer"):
        JwtVerifier("x", issuer="", audience=AUDIENCE)
    with pytest.raises(AuthConfigError, match="cannot read"):
        JwtVerifier.from_file(tmp_path / "absent.pem", issuer=ISSUER, audience=AUDIENCE)


# ---- metadata ---------------------------------------------------------------------------------------------------


def test_metadata_must_carry_a_bearer_token(tmp_path: Path) -> None:
    verifier = ApiKeyVerifier.from_file(keys_file(tmp_path, {"k1": "acme"}))
    assert authenticate(verifier, [("authorization", "Bearer k1")]) == "acme"
    assert authenticate(verifier, [("user-agent", "x"), ("authorization", "bearer  k1 ")]) == "acme"
    for metadata in ([], None, [("authorization", "Basic k1")], [("authorization", "Bearer ")]):
        with pytest.raises(AuthenticationFailed) as caught:
            authenticate(verifier, metadata)
        assert "`authorization: Bearer <token>`" in caught.value.reason
    with pytest.raises(AuthenticationFailed) as caught:
        authenticate(verifier, [("authorization", "Bearer k2")])
    assert caught.value.reason.startswith("the API key is not valid; send gRPC metadata `authorization: Bearer")
