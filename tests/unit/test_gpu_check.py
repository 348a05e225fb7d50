"""perf/gpu_check.sh and perf.gpu_check (issue 16): never run on a GPU here, so its code runs on the CPU.

The CPU run is the same code at smoke sizes: every stage builds, casts, opens streams and steps,
and the table and JSON come out; only the figures (and peak memory, CUDA-only) mean nothing here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perf import gpu_check

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_stage_steps_in_every_dtype_and_the_table_comes_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--device", "cpu", "--preset", "smoke", "--steps", "1", "--batches", "1,2", "--out", str(tmp_path)]
    assert gpu_check.main([*args, "--dtypes", "float32,bfloat16", "--stages", "encoder,duplex,speech_lm,backbone"]) == 0
    assert gpu_check.main([*args, "--dtypes", "bfloat16", "--stages", "vocoder", "--batches", "2"]) == 0
    text = capsys.readouterr().out
    for stage in ("encoder", "duplex", "speech_lm", "backbone"):
        for dtype in ("float32", "bfloat16"):
            assert f"| {stage} |" in text and f"| {dtype} | 2 |" in text
    assert "| vocoder |" in text
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["rows"]
    assert {r["stage"] for r in rows} == {"vocoder"} and all(r["ms_per_step"] > 0 for r in rows)
    assert (tmp_path / "gpu_check.md").read_text().startswith("## One batched step per stage")


def test_without_a_gpu_the_script_says_so_and_fails(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["bash", str(ROOT / "perf" / "gpu_check.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "nvidia-smi not found" in done.stderr
    assert gpu_check.main(["--device", "cuda"]) == 2  # CPU torch: no CUDA device, named


def test_the_script_is_bounded_below_eight_minutes() -> None:
    script = (ROOT / "perf" / "gpu_check.sh").read_text()
    assert "timeout 450 " in script and os.access(ROOT / "perf" / "gpu_check.sh", os.X_OK)
