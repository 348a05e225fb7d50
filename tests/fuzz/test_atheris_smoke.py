"""A short atheris run of each harness inside the normal suite (``make fuzz`` runs them for minutes).

Each harness runs in a subprocess: atheris' ``Setup`` takes over the process's arguments and libFuzzer
exits the process when it is done, neither of which may happen inside pytest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.counts import count
from tests.fuzz.run_atheris import HARNESSES, run

RUNS = 500


@pytest.mark.parametrize("harness", sorted(HARNESSES))
def test_harness_runs_clean(harness: str, tmp_path: Path) -> None:
    result = run(harness, runs=RUNS, out=tmp_path)
    assert result.returncode == 0, result.output[-4000:]
    assert result.runs == RUNS, result.output[-2000:]
    assert not list((tmp_path / "crashes").iterdir()), "libFuzzer wrote a crash input"
    count(f"atheris.smoke.{harness}", result.runs)
