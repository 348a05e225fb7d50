"""The autoscaler's YAML config: defaults, and errors that name the field to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.autoscaler import ConfigError, load_config, parse_config
from orchestrator.cli import main

GOOD = """
redis_prefix: "prod:"
pools:
  - name: all
    min_replicas: 1
    max_replicas: 8
    sessions_per_pod: 6
    slo:
      stage_p95_seconds: {backbone: 0.25, vocoder: 0.08}
      queue_seconds: 0.05
    scale_down_window_seconds: 600
  - name: speak
    deployment: demo-triton-speak
"""


def test_a_full_config_loads_with_defaults_filled_in(tmp_path: Path) -> None:
    path = tmp_path / "autoscaler.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.redis_prefix == "prod:"
    first, second = config.pools
    assert (first.max_replicas, first.sessions_per_pod, first.scale_down_window_seconds) == (8, 6, 600.0)
    assert dict(first.slo.stage_p95_seconds) == {"backbone": 0.25, "vocoder": 0.08}
    assert first.slo.queue_seconds == 0.05
    assert (second.deployment, second.min_replicas, second.scale_up_window_seconds) == ("demo-triton-speak", 1, 30.0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "`pools` must be a non-empty list"),
        ({"pools": [{"name": "all", "max_replicas": 0}]}, r"pools\[0\]: need min_replicas <= max_replicas"),
        # Scale to zero is refused with the reason: a pool without a pod never sees the demand to wake up.
        (
            {"pools": [{"name": "all", "min_replicas": 0}]},
            r"pools\[0\].min_replicas must be at least 1, got 0: scale to zero",
        ),
        ({"pools": [{"name": "all", "min_replicas": 5, "max_replicas": 2}]}, "got min 5, max 2"),
        ({"pools": [{"name": "all", "max_replicas": "4"}]}, r"pools\[0\].max_replicas must be an integer, got '4'"),
        ({"pools": [{"name": "all", "max_replicas": True}]}, "must be an integer, got True"),
        ({"pools": [{"name": "all", "max_replica": 4}]}, r"unknown field\(s\) max_replica; allowed: deployment"),
        ({"pools": [{"name": "all", "target_utilization": 1.5}]}, r"target_utilization must be in \(0, 1\]"),
        ({"pools": [{"name": "all", "slo": {"queue_seconds": 0}}]}, "latency bounds must be positive"),
        ({"pools": [{"name": "a"}, {"name": "a"}]}, "pool names must be unique; repeated: a"),
        ({"pools": [{"max_replicas": 2}]}, r"pools\[0\].name must be a non-empty string"),
    ],
)
def test_wrong_fields_are_named_in_the_error(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_cli_reports_a_bad_config_before_touching_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "autoscaler.yaml"
    path.write_text("pools: [{name: all, sessions_per_pod: 0}]\n")
    assert main(["autoscale", "--release", "demo", "--config", str(path), "--dry-run"]) == 1
    assert "pools[0].sessions_per_pod must be at least 1, got 0" in capsys.readouterr().err


def test_cli_reports_a_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["autoscale", "--release", "demo", "--config", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read autoscaler config" in capsys.readouterr().err
