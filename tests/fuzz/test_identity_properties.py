"""Property tests of what names a caller and a session: auth metadata, tenant names, session ids.

Whatever bytes a client puts there, the answer is a tenant, or ``AuthenticationFailed`` with a reason
(UNAUTHENTICATED), or for a session id a ``NotFound`` / ``InvalidArgument``: never another exception,
never a key outside the session's own, never the auth-none tenant ``default``.
"""

from __future__ import annotations

import hashlib

from hypothesis import example, given, settings
from hypothesis import strategies as st

from orchestrator.errors import InvalidArgument, NotFound
from orchestrator.security.interceptor import authenticate
from orchestrator.security.tenant import DEFAULT_TENANT, valid_tenant
from orchestrator.security.verifiers import ApiKey, ApiKeyVerifier, AuthenticationFailed
from orchestrator.state.ids import checked_session_id
from tests.fuzz.counts import count

KEY = "k-acme-0123456789"
VERIFIER = ApiKeyVerifier([ApiKey(hashlib.sha256(KEY.encode()).digest(), "acme")])
header_names = st.sampled_from(["authorization", "Authorization", "authorization-bin", "x-api-key", "auth"])
header_values = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80),
    st.sampled_from([f"Bearer {KEY}", f"bearer {KEY}", f"Bearer  {KEY} ", "Bearer", "Bearer ", f"Basic {KEY}", KEY]),
)


@settings(max_examples=400, deadline=None, database=None)
@given(st.lists(st.tuples(header_names, header_values), max_size=6))
@example([("authorization", f"Bearer {KEY}"), ("authorization", f"Bearer {KEY}")])
@example([("authorization", "Bearer other"), ("authorization", f"Bearer {KEY}")])
def test_auth_metadata_names_the_tenant_or_fails_with_a_reason(metadata: list[tuple[str, str | bytes]]) -> None:
    count("properties.auth_metadata")
    entries = [value for key, value in metadata if key == "authorization"]
    try:
        tenant = authenticate(VERIFIER, metadata)
    except AuthenticationFailed as exc:
        assert exc.reason.strip()
        return
    assert tenant == "acme"
    assert len(entries) == 1, "two authorization entries must be refused, whichever comes first"


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(st.text(max_size=80), st.sampled_from(["default", "acme", "a" * 64, "a" * 65, "a:b", "-x", ""])))
def test_a_tenant_name_is_safe_in_a_redis_key_and_never_the_default(name: str) -> None:
    count("properties.tenant_names")
    accepted = valid_tenant(name)
    if accepted is None:
        return
    assert accepted == name != DEFAULT_TENANT
    assert 1 <= len(name) <= 64 and ":" not in name and "*" not in name and name[0] not in "._-"
    assert name.isascii() and name.isprintable() and " " not in name


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(st.text(max_size=80), st.from_regex(r"[0-9a-f]{32}(:turns|:lease|:speech)?", fullmatch=True)))
def test_a_session_id_is_32_hex_digits_or_not_found(value: str) -> None:
    count("properties.session_ids")
    try:
        checked = checked_session_id(value)
    except InvalidArgument:
        assert value == ""
        return
    except NotFound:
        return
    assert len(checked) == 32 and all(c in "0123456789abcdef" for c in checked)
