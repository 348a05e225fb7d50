"""Client side of token auth for the tests: a channel that sends ``authorization: Bearer <token>`` on every call."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import grpc
import grpc.aio


class _Bearer:
    """Adds the token to each call's metadata, as a client library's auth hook would."""

    def __init__(self, token: str) -> None:
        self.token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add("authorization", f"Bearer {self.token}")
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# One class per call kind: a channel files each interceptor under the first kind it is an instance of.
class _UnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnary(_Bearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _StreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def bearer_interceptors(token: str) -> list[Any]:
    return [kind(token) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


def token_channel(address: str, token: str | None) -> grpc.aio.Channel:
    """A plaintext channel that authenticates with ``token`` (None: sends no credentials)."""
    interceptors = bearer_interceptors(token) if token is not None else None
    return grpc.aio.insecure_channel(address, interceptors=interceptors)


def write_api_keys(path: Path, keys: dict[str, str]) -> Path:
    """The ``--api-keys-file`` for ``{key: tenant}``: only the keys' digests are written."""
    entries = [{"key_sha256": hashlib.sha256(k.encode()).hexdigest(), "tenant": t} for k, t in keys.items()]
    path.write_text(json.dumps({"keys": entries}))
    return path
