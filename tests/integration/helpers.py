"""Small helpers for the Triton integration tests."""

from __future__ import annotations

import re
import urllib.request

import numpy as np

from orchestrator.triton.client import ModelStream
from orchestrator.triton.errors import TritonStageError


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
