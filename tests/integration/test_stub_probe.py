"""The Triton container's liveness probe (``python -m services.triton.stub_probe``) on a healthy server.

The dead case (a killed stub: the model stays READY, the probe says DEAD and exits 1) is asserted in
``tests/faults/test_triton_stub_killed.py``, which kills stubs of a Triton of its own.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.devstack.triton_launcher import TritonProcess
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_stub_of_a_healthy_server_answers_the_probe(triton: TritonProcess) -> None:
    probe = subprocess.run(
        [sys.executable, "-m", "services.triton.stub_probe", "--url", triton.grpc_url, "--timeout", "10"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    lines = dict(line.split(": ", 1) for line in probe.stdout.splitlines())
    assert set(lines) == {"encoder", "backbone", "duplex", "speech_lm", "vocoder"}
    assert all(state.startswith("alive") for state in lines.values()), lines


def test_the_probe_fails_when_the_server_does_not_answer() -> None:
    probe = subprocess.run(
        [sys.executable, "-m", "services.triton.stub_probe", "--url", "127.0.0.1:1", "--timeout", "1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 1
    assert "127.0.0.1:1" in probe.stderr
