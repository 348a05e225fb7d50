"""The Triton pods' preStop hook, as the chart renders it, against the real Triton of the session fixture.

The hook must hold a removed pod's tritonserver up while requests keep arriving (a turn in flight) and let
it go soon after they stop. Traffic here is the stub probe's no-op request to every model, repeated: real
inference requests that Triton counts like any other.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import helm_python as helm
import pytest

from orchestrator.devstack.triton_launcher import TritonProcess
from services.triton.stub_probe import probe
from tests.helm.chart_render import CHART_DIR, render

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def rendered_hook(metrics_url: str, **seconds: int) -> list[str]:
    """The chart's preStop command for the default pool, pointed at this Triton, with shorter waits."""
    values = {"triton": {"termination": {"exitTimeoutSeconds": 30, **seconds}}}
    with helm.Chart.load(CHART_DIR) as chart:
        pool = render(chart, values).find("Deployment", "minmo-serve-triton-all")
    command: list[str] = pool["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["python3", "-m", "services.triton.drain_wait"]
    url = command.index("--metrics-url") + 1
    return [sys.executable, *command[1:url], metrics_url, *command[url + 1 :]]


def run_hook(command: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return time.monotonic() - started, done.stdout


def test_an_idle_pod_is_let_go_after_the_minimum_and_the_quiet_time(triton: TritonProcess) -> None:
    elapsed, said = run_hook(rendered_hook(triton.metrics_url, minSeconds=1, quietSeconds=2, maxSeconds=30))
    assert "the turns in flight are over" in said
    assert 1.5 < elapsed < 6, elapsed


def test_a_pod_is_held_while_requests_arrive_and_let_go_once_they_stop(triton: TritonProcess) -> None:
    traffic_seconds = 8.0
    stop = threading.Event()

    def turn_in_flight() -> None:
        end = time.monotonic() + traffic_seconds
        while time.monotonic() < end and not stop.is_set():
            probe(triton.grpc_url, timeout=5)

    traffic = threading.Thread(target=turn_in_flight, daemon=True)
    traffic.start()
    try:
        elapsed, said = run_hook(rendered_hook(triton.metrics_url, minSeconds=1, quietSeconds=3, maxSeconds=40))
    finally:
        stop.set()
        traffic.join(timeout=30)
    assert "the turns in flight are over" in said
    assert traffic_seconds < elapsed < traffic_seconds + 8, elapsed


def test_a_pod_that_stays_busy_is_let_go_at_the_bound(triton: TritonProcess) -> None:
    stop = threading.Event()

    def endless() -> None:
        while not stop.is_set():
            probe(triton.grpc_url, timeout=5)

    traffic = threading.Thread(target=endless, daemon=True)
    traffic.start()
    try:
        elapsed, said = run_hook(rendered_hook(triton.metrics_url, minSeconds=1, quietSeconds=3, maxSeconds=6))
    finally:
        stop.set()
        traffic.join(timeout=30)
    assert "still busy after 6 s" in said
    assert 5.5 < elapsed < 10, elapsed
