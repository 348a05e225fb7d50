"""Small helpers for the integration tests: Triton streams and errors, Redis clean-up."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import redis.asyncio

from orchestrator.state.store import SessionStore
from orchestrator.triton.client import ModelStream
from orchestrator.triton.errors import TritonStageError

REDIS_URL = "redis://127.0.0.1:6379/0"


def open_streams(metrics_port: int, model: str) -> float:
    """The ``minmo_open_streams`` gauge a model exports on Triton's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf'^minmo_open_streams\{{[^}}]*model="{model}"[^}}]*\}} (\S+)$', text, re.MULTILINE)
    if match is None:
        raise AssertionError(f"no minmo_open_streams sample for {model} in /metrics")
    return float(match.group(1))


async def collect(stream: ModelStream, tensors: dict[str, np.ndarray], **kwargs: object) -> list[dict[str, np.ndarray]]:
    return [out async for out in stream.request(tensors, **kwargs)]  # type: ignore[arg-type]


async def expect_invalid(awaitable: object, fragment: str) -> TritonStageError:
    try:
        await awaitable  # type: ignore[misc]
    except TritonStageError as exc:
        assert fragment.lower() in exc.message.lower(), exc.message
        return exc
    raise AssertionError(f"expected an error mentioning {fragment!r}")


async def delete_matching(client: redis.asyncio.Redis, pattern: str) -> None:
    """Remove a test's keys from the shared Redis (never FLUSHALL: other runs may share it)."""
    leftover = [key async for key in client.scan_iter(match=pattern)]
    if leftover:
        await client.delete(*leftover)


@asynccontextmanager
async def temporary_store(label: str) -> AsyncIterator[SessionStore]:
    """A session store under a prefix of its own on the shared Redis, its keys removed afterwards."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    prefix = f"test-{label}-{uuid.uuid4().hex[:8]}:"
    try:
        yield SessionStore(client, prefix=prefix)
    finally:
        await delete_matching(client, f"{prefix}*")
        await client.aclose()


def run_stub_probe(grpc_url: str, timeout_s: float = 10) -> tuple[int, str, str]:
    """Run the Triton container's liveness probe (``services.triton.stub_probe``) as kubelet would."""
    done = subprocess.run(
        [sys.executable, "-m", "services.triton.stub_probe", "--url", grpc_url, "--timeout", f"{timeout_s:g}"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr
