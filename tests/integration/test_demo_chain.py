"""The main job end to end: a spoken question through all five models, a reply WAV out."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from orchestrator.demo_chain import run_demo
from orchestrator.devstack.triton_launcher import TritonProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_demo_writes_a_24khz_reply_and_reports_every_stage(triton: TritonProcess, tmp_path: Path) -> None:
    lines: list[str] = []
    out = tmp_path / "reply.wav"
    result = await run_demo(
        triton.grpc_url, triton.metrics_url, "Hello there. What time is it?", out, realtime=False, log=lines.append
    )
    audio, rate = sf.read(str(out), dtype="float32")
    assert rate == 24_000
    assert len(audio) > 0 and len(audio) % 960 == 0  # whole speech tokens, 40 ms each
    assert result.reply_seconds == pytest.approx(len(audio) / 24_000)
    assert result.first_audio_ms is not None and result.first_audio_ms > 0
    # The trained duplex predictor must end the user's turn during the trailing silence.
    assert result.respond_after_ms is not None
    assert 0 < result.respond_after_ms < 1600
    for model in ("encoder", "backbone", "duplex", "speech_lm", "vocoder"):
        row = next(line for line in result.stage_table.splitlines() if line.startswith(model))
        requests, work_ms = int(row.split()[1]), float(row.split()[4])
        assert requests > 0 and work_ms > 0, row
