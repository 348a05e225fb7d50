"""The Triton container's liveness probe (``python -m services.triton.stub_probe``) on a healthy server.

The dead case (a killed stub: the model stays READY, the probe says DEAD and exits 1) is asserted in
``tests/faults/test_triton_stub_killed.py``, which kills stubs of a Triton of its own.
"""

from __future__ import annotations

import pytest

from orchestrator.devstack.triton_launcher import TritonProcess
from tests.integration.helpers import run_stub_probe

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_stub_of_a_healthy_server_answers_the_probe(triton: TritonProcess) -> None:
    code, out, err = run_stub_probe(triton.grpc_url)
    assert code == 0, out + err
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert set(lines) == {"encoder", "backbone", "duplex", "speech_lm", "vocoder"}
    assert all(state.startswith("alive") for state in lines.values()), lines


def test_the_probe_fails_when_the_server_does_not_answer() -> None:
    code, _out, err = run_stub_probe("127.0.0.1:1", timeout_s=1)
    assert code == 1
    assert "127.0.0.1:1" in err
