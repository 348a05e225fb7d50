"""Test speech and noise: espeak-ng speech, noise bursts and background noise (no torch: the orchestrator's
clients, the perf harness and the duplex predictor's synthetic dialogues all use it).

Speech clips are trimmed to their voiced extent so that the dialogue timeline knows exactly when the
user starts and stops talking: the label rules are defined on those instants. Synthesised clips are
cached as ``.npy`` files keyed by everything that determines them (never in git).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
_ESPEAK_RATE = 22_050
_TRIM_WINDOW = 160  # 10 ms
_TRIM_DB = -35.0  # below the clip's loudest 10 ms window


def default_cache_dir() -> Path:
    """Where synthesised audio and features are cached; ``MINMO_CACHE_DIR`` overrides."""
    root = os.environ.get("MINMO_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "minmo-serve" / "duplex"


def espeak(text: str, voice: str, rate: int, pitch: int, cache_dir: Path) -> np.ndarray:
    """Speak ``text`` with espeak-ng; float32 mono at 16 kHz, trimmed to the spoken part."""
    key = hashlib.sha256(f"{text}|{voice}|{rate}|{pitch}".encode()).hexdigest()[:24]
    path = cache_dir / "speech" / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        cmd = ["espeak-ng", "-w", str(wav), "-v", voice, "-s", str(rate), "-p", str(pitch), text]
        subprocess.run(cmd, check=True, capture_output=True)
        audio, rate_hz = sf.read(str(wav), dtype="float32")
    if rate_hz != _ESPEAK_RATE:
        raise RuntimeError(f"espeak-ng wrote {rate_hz} Hz audio, expected {_ESPEAK_RATE} Hz")
    clip = trim(soxr.resample(audio, _ESPEAK_RATE, SAMPLE_RATE).astype(np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp_path, clip)
    tmp_path.replace(path)
    return clip


def trim(clip: np.ndarray) -> np.ndarray:
    """Cut leading and trailing near-silence (espeak pads its output)."""
    n = len(clip) // _TRIM_WINDOW
    if n == 0:
        return clip
    energy = (clip[: n * _TRIM_WINDOW].reshape(n, _TRIM_WINDOW) ** 2).mean(axis=1)
    db = 10 * np.log10(energy + 1e-12)
    active = np.flatnonzero(db > db.max() + _TRIM_DB)
    return clip[active[0] * _TRIM_WINDOW : (active[-1] + 1) * _TRIM_WINDOW].copy()


def noise_burst(rng: np.random.Generator) -> np.ndarray:
    """A cough (sometimes double), knock or breath: 40-600 ms of shaped noise that must not trigger."""
    kind = rng.integers(3)
    if kind == 0:  # cough: band-limited noise, fast attack, ~100-250 ms decay, sometimes doubled
        parts = [_shaped_noise(rng, rng.uniform(0.12, 0.25), 300.0, 3000.0, attack=0.01)]
        if rng.random() < 0.4:
            parts += [np.zeros(int(rng.uniform(0.05, 0.1) * SAMPLE_RATE), np.float32), parts[0] * 0.7]
        burst = np.concatenate(parts)
        peak = rng.uniform(0.15, 0.5)
    elif kind == 1:  # knock or click: very short broadband transient
        burst = _shaped_noise(rng, rng.uniform(0.04, 0.09), 100.0, 6000.0, attack=0.002)
        peak = rng.uniform(0.2, 0.6)
    else:  # breath: soft high-passed noise
        burst = _shaped_noise(rng, rng.uniform(0.2, 0.35), 1000.0, 6000.0, attack=0.08)
        peak = rng.uniform(0.03, 0.1)
    return (burst * (peak / (np.abs(burst).max() + 1e-9))).astype(np.float32)


DIGITAL_SILENCE_P = 0.25


def background(rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """Low stationary noise (about 35-50 dB below speech), or digital silence in a quarter of dialogues.

    Muted or VAD-gated microphones and padded files send exact zeros between words; a predictor
    that only ever heard a noise floor never decides on such input (seen with the demo's padding).
    """
    if rng.uniform() < DIGITAL_SILENCE_P:
        return np.zeros(n_samples, np.float32)
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.fft.rfftfreq(n_samples, 1 / SAMPLE_RATE)
    tilt = rng.uniform(0.0, 1.0)  # 0: white, 1: pink; a crude room/hum colour
    spectrum *= np.maximum(freqs, 20.0) ** (-tilt / 2)
    noise = np.fft.irfft(spectrum, n_samples)
    level = 10 ** (rng.uniform(-62.0, -48.0) / 20)
    return (noise / (np.std(noise) + 1e-12) * level).astype(np.float32)


def _shaped_noise(rng: np.random.Generator, seconds: float, low: float, high: float, *, attack: float) -> np.ndarray:
    n = max(int(seconds * SAMPLE_RATE), 16)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    noise = np.fft.irfft(spectrum, n)
    t = np.arange(n) / SAMPLE_RATE
    envelope = np.minimum(t / attack, 1.0) * np.exp(-t / (seconds / 3))
    return (noise * envelope).astype(np.float32)
