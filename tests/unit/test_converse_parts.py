"""Pure parts of Converse: played-text truncation, the speech-event detector, session settings."""

from __future__ import annotations

import numpy as np
import pytest
from minmo.v1 import minmo_pb2 as pb

from minmo_contracts.vad import EnergyVad
from orchestrator.converse.context import token_count_for_played
from orchestrator.converse.settings import SessionSettings
from orchestrator.errors import InvalidArgument


def test_played_audio_keeps_five_text_tokens_per_600_ms() -> None:
    assert token_count_for_played(0, 40) == 0
    assert token_count_for_played(600, 40) == 5
    assert token_count_for_played(601, 40) == 6  # a token whose speech began to play is kept
    assert token_count_for_played(60_000, 40) == 40


def test_vad_reports_start_and_stop_with_hangover() -> None:
    vad = EnergyVad()
    tone = (0.2 * np.sin(np.arange(16_000) / 3)).astype(np.float32)
    quiet = np.zeros(16_000, np.float32)
    started = vad.push(np.concatenate([quiet[:8000], tone]))
    assert [e.started for e in started] == [True] and 480 <= started[0].at_ms <= 560
    stopped = vad.push(quiet)
    assert [e.started for e in stopped] == [False] and stopped[0].at_ms == 1500
    assert not vad.speaking


def test_settings_round_trip_and_reject_what_the_server_cannot_do() -> None:
    config = pb.SessionConfig(
        instructions="Be brief.",
        input_audio_format=pb.AudioFormat(encoding=pb.AudioFormat.FLOAT32, sample_rate_hz=48_000),
        turn_detection=pb.TURN_DETECTION_CLIENT,
        max_response_tokens=32,
    )
    settings = SessionSettings.from_proto(config)
    assert SessionSettings.from_dict(settings.to_dict()) == settings
    assert settings.to_proto() == config
    assert SessionSettings.from_proto(pb.SessionConfig()).turn_detection == "model"
    with pytest.raises(InvalidArgument, match="sample_rate_hz 96000"):
        SessionSettings.from_proto(pb.SessionConfig(input_audio_format=pb.AudioFormat(sample_rate_hz=96_000)))
    with pytest.raises(InvalidArgument, match="max_response_tokens"):
        SessionSettings.from_proto(pb.SessionConfig(max_response_tokens=5000))


def test_vad_silence_counts_from_the_last_speech_and_a_click_does_not_restart_it() -> None:
    frame = 320  # 20 ms
    quiet, loud = np.zeros(10 * frame, np.float32), np.full(5 * frame, 0.1, np.float32)
    vad = EnergyVad()
    vad.push(quiet)
    assert vad.silence_ms == 0, "nobody has spoken yet"
    vad.push(loud)
    assert vad.silence_ms == 0
    vad.push(quiet)
    assert vad.silence_ms == 200
    vad.push(np.full(frame, 0.1, np.float32))  # one loud frame: a click, not speech
    assert vad.last_voiced_ms == vad.audio_ms and vad.silence_ms == 220
