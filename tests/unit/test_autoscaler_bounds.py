"""The autoscaler's small parts that keep it bounded and honest: the heartbeat probe, the round deadline,
MicroTime serialisation, label selectors from a Deployment's selector, and Redis credential checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes import client

from orchestrator.autoscaler.bounds import Bounds, Deadline, RoundTimeout
from orchestrator.autoscaler.config import ConfigError
from orchestrator.autoscaler.heartbeat import Heartbeat, main, problem
from orchestrator.autoscaler.kube import ClusterError, label_selector
from orchestrator.autoscaler.lease import micro_time
from orchestrator.autoscaler.redis_client import build_redis


def test_a_fresh_heartbeat_passes_and_a_stale_one_fails_with_the_reason(tmp_path: Path) -> None:
    now = [1000.0]
    beat = Heartbeat(tmp_path / "hb", max_age_seconds=60, wall_clock=lambda: now[0])
    beat.beat("ok")
    assert json.loads(beat.path.read_text()) == {"time": 1000.0, "max_age_seconds": 60, "round": "ok"}
    assert problem(beat.path, 1059.0) is None
    reason = problem(beat.path, 1061.0)
    assert reason is not None and "61 s ago" in reason and "stuck" in reason
    assert main([str(beat.path)]) == 1  # the real clock is far past 1000


def test_the_probe_fails_without_a_heartbeat_or_with_a_broken_one(tmp_path: Path) -> None:
    assert "has not started" in (problem(tmp_path / "missing", 0.0) or "")
    (tmp_path / "broken").write_text("{")
    assert "unreadable" in (problem(tmp_path / "broken", 0.0) or "")
    Heartbeat(tmp_path / "hb", 60).beat("failed: TimeoutError")
    assert main([str(tmp_path / "hb")]) == 0  # a failed round is still a loop going round


def test_the_heartbeat_bound_covers_a_wait_a_full_round_and_its_slowest_step() -> None:
    bounds = Bounds(kube_seconds=10, redis_seconds=5, prometheus_seconds=5, round_seconds=60)
    assert bounds.longest_call_seconds == 20  # a pod list reads the Deployment, then the pods
    assert bounds.heartbeat_max_age(15) == 15 + 60 + 20 + 10
    with pytest.raises(ValueError, match="kube_seconds must be > 0"):
        Bounds(kube_seconds=0)


def test_a_deadline_stops_the_round_before_the_next_step() -> None:
    now = [0.0]
    deadline = Deadline(60, lambda: now[0])
    deadline.check("listing pods")
    now[0] = 61.0
    with pytest.raises(RoundTimeout, match="past 60 s; stopped before scaling"):
        deadline.check("scaling")


def test_micro_time_never_lets_the_client_drop_the_fraction() -> None:
    """The client sends datetime.isoformat(), which drops a zero fraction; the API server then refuses it."""
    whole = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    assert client.ApiClient().sanitize_for_serialization(whole) == "2026-11-25T12:00:00+00:00"  # the problem
    sent = client.ApiClient().sanitize_for_serialization(micro_time(whole))
    assert sent == "2026-11-25T12:00:00.000001+00:00"
    other = datetime(2026, 11, 25, 12, 0, 0, 250000, tzinfo=UTC)
    assert micro_time(other) == other
    with pytest.raises(ValueError, match="timezone-aware"):
        micro_time(datetime(2026, 11, 25))


def expression(key: str, operator: str, values: list[str] | None = None) -> SimpleNamespace:
    return SimpleNamespace(key=key, operator=operator, values=values)


def test_label_selectors_carry_match_expressions_in_the_set_based_syntax() -> None:
    selector = label_selector(
        {"b": "2", "a": "1"},
        [
            expression("track", "NotIn", ["canary", "beta"]),
            expression("zone", "In", ["z2", "z1"]),
            expression("gpu", "Exists"),
            expression("spot", "DoesNotExist"),
        ],
    )
    assert selector == "a=1,b=2,track notin (beta,canary),zone in (z1,z2),gpu,!spot"
    with pytest.raises(ClusterError, match="unknown label selector operator 'Gt'"):
        label_selector({}, [expression("x", "Gt", ["1"])])


def test_redis_credentials_that_cannot_work_are_refused_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--redis-ca needs TLS"):
        build_redis("redis://r:6379/0", ca_file=tmp_path / "ca.crt")
    with pytest.raises(ConfigError, match="cannot read the Redis password file"):
        build_redis("redis://r:6379/0", password_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match="no such file"):
        build_redis("rediss://r:6380/0", ca_file=tmp_path / "missing.crt")
    with pytest.raises(ConfigError, match="redis:// or rediss://"):
        build_redis("http://r:6379/0")
    (tmp_path / "password").write_text("pw\n")
    (tmp_path / "ca.crt").write_text("not checked until a connection")
    redis = build_redis("redis://r:6379/0", password_file=tmp_path / "password", tls=True, ca_file=tmp_path / "ca.crt")
    options = redis.connection_pool.connection_kwargs
    assert options["password"] == "pw" and options["ssl_ca_certs"] == str(tmp_path / "ca.crt")
    assert options["socket_timeout"] == 5.0 and options["socket_connect_timeout"] == 5.0
