"""Builders of the ServerEvent messages of Converse, so the session logic stays free of protobuf."""

from __future__ import annotations

import numpy as np
from minmo.v1 import minmo_pb2 as pb


def session_started(session_id: str, resume_token: str, *, resumed: bool, history_turns: int) -> pb.ServerEvent:
    return pb.ServerEvent(
        session_started=pb.SessionStarted(
            session_id=session_id, resume_token=resume_token, resumed=resumed, history_turns=history_turns
        )
    )


def speech_started(at_ms: int) -> pb.ServerEvent:
    return pb.ServerEvent(speech_started=pb.SpeechStarted(audio_start_ms=at_ms))


def speech_stopped(at_ms: int) -> pb.ServerEvent:
    return pb.ServerEvent(speech_stopped=pb.SpeechStopped(audio_end_ms=at_ms))


def response_started(response_id: int) -> pb.ServerEvent:
    return pb.ServerEvent(response_started=pb.ResponseStarted(response_id=response_id))


def text_delta(response_id: int, text: str) -> pb.ServerEvent:
    return pb.ServerEvent(text_delta=pb.TextDelta(response_id=response_id, text=text))


def audio_delta(response_id: int, sequence: int, samples: np.ndarray) -> pb.ServerEvent:
    pcm16 = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    return pb.ServerEvent(audio_delta=pb.AudioDelta(response_id=response_id, sequence=sequence, data=pcm16))


def response_done(
    response_id: int, *, interrupted: bool, played_ms: int, text: str, latencies: dict[str, float]
) -> pb.ServerEvent:
    status = pb.INTERRUPTED if interrupted else pb.COMPLETED
    return pb.ServerEvent(
        response_done=pb.ResponseDone(
            response_id=response_id,
            status=status,
            played_ms=played_ms,
            text=text,
            latencies=pb.StageLatencies(**latencies),
        )
    )


def error(code: str, message: str) -> pb.ServerEvent:
    return pb.ServerEvent(error=pb.Error(code=code, message=message))


def response_failed(response_id: int, *, played_ms: int) -> pb.ServerEvent:
    """A response cut by a failure (the error event says which): nothing of it is stored."""
    return pb.ServerEvent(response_done=pb.ResponseDone(response_id=response_id, status=pb.FAILED, played_ms=played_ms))
