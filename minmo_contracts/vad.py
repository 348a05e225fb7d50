"""Speech start/stop events for the client, from the energy of the incoming audio.

The duplex model decides *when to respond* and *when the user barges in*; the events
``speech_started`` / ``speech_stopped`` only tell the client what the listen path hears, so a
cheap energy detector with hangover serves them, and gives the end-of-speech instant that the
latency figures count from. Its silence since the last voiced frame is also the respond floor of
the turn-taking policy (:mod:`minmo_contracts.turn_taking`), which is why it lives here, numpy only:
the predictor's evaluation (``services.duplex``) runs this same detector over its dialogues.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
FRAME = 320  # 20 ms


@dataclass
class VadEvent:
    started: bool  # True: speech started; False: speech stopped
    at_ms: int  # session audio time of the event


class EnergyVad:
    def __init__(self, *, threshold_db: float = -42.0, start_frames: int = 3, hangover_frames: int = 15) -> None:
        self._threshold = 10 ** (threshold_db / 10)
        self._start_frames = start_frames
        self._hangover = hangover_frames
        self._pending = np.zeros(0, np.float32)
        self._samples = 0
        self._voiced_run = 0
        self._silent_run = 0
        self.speaking = False
        self.last_voiced_ms = -1  # the last frame over the threshold (a click or a breath too)
        self.last_speech_ms = -1  # the last frame of a voiced run long enough to start speech

    def push(self, pcm: np.ndarray) -> list[VadEvent]:
        """Feed 16 kHz audio; return the start/stop events it completes."""
        data = np.concatenate([self._pending, pcm])
        usable = len(data) // FRAME * FRAME
        self._pending = data[usable:]
        events: list[VadEvent] = []
        for frame in data[:usable].reshape(-1, FRAME):
            self._samples += FRAME
            now_ms = self._samples * 1000 // SAMPLE_RATE
            voiced = float(np.mean(frame.astype(np.float64) ** 2)) > self._threshold
            if voiced:
                self.last_voiced_ms = now_ms
                self._voiced_run += 1
                self._silent_run = 0
                if self._voiced_run >= self._start_frames:
                    self.last_speech_ms = now_ms
                if not self.speaking and self._voiced_run >= self._start_frames:
                    self.speaking = True
                    events.append(VadEvent(True, now_ms - self._start_frames * 20))
            else:
                self._voiced_run = 0
                self._silent_run += 1
                if self.speaking and self._silent_run >= self._hangover:
                    self.speaking = False
                    events.append(VadEvent(False, self.last_voiced_ms))
        return events

    @property
    def audio_ms(self) -> int:
        return self._samples * 1000 // SAMPLE_RATE

    @property
    def silence_ms(self) -> int:
        """Audio since the last speech (a voiced run of ``start_frames``, so an isolated noisy frame does not
        restart it); 0 before any speech (nobody has spoken: nothing to answer)."""
        return self.audio_ms - self.last_speech_ms if self.last_speech_ms >= 0 else 0
