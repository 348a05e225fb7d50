"""What the autoscaler's integration tests share: the fake Kubernetes API server, a key prefix, Redis.

``tests/integration/conftest.py`` registers the fixtures (``pytest_plugins`` may only name plugins from the
root conftest), so a test module asks for ``api``, ``prefix`` or ``redis`` by name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis import Redis
from redis.exceptions import RedisError

from tests.integration.fake_kube_api import FakeKubernetesApiServer

REDIS_URL = "redis://127.0.0.1:6379/0"
NS = "minmo"


@pytest.fixture
def api() -> Iterator[FakeKubernetesApiServer]:
    with FakeKubernetesApiServer(NS).running() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}:minmo:"


@pytest.fixture
def redis(prefix: str) -> Iterator[Redis]:
    connection = Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except RedisError as exc:
        pytest.fail(f"no Redis at {REDIS_URL} ({exc}): `minmo stack up` starts one")
    yield connection
    leftover = list(connection.scan_iter(match=f"{prefix}*"))
    if leftover:
        connection.delete(*leftover)
    connection.close()
