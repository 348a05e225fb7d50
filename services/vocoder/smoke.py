"""Seeded smoke weights that behave like a vocoder, not like noise, so the tests mean something.

PyTorch's default init makes HiFT's log-magnitudes flat across the nine iSTFT bins (the output
would be mostly 6-12 kHz hiss) and a random F0 head predicts ~0 Hz (everything unvoiced). The smoke
model instead gets variance-preserving convolutions, a ``conv_post`` bias that tilts the spectrum
towards low frequencies like speech, and an F0 head centred on a speaking voice. The result
depends clearly on the tokens (two random utterances differ by about half their RMS), stays well
inside [-1, 1], and exercises the harmonic NSF source.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import VocoderConfig
from .model import Token2Wav

SMOKE_F0_HZ = 140.0
_POST_WEIGHT_SCALE = 0.2
_LOG_MAGNITUDE_BIAS = 0.5  # of the DC bin
_LOG_MAGNITUDE_TILT = 0.6  # per 1.5 kHz bin


@torch.no_grad()
def smoke_token2wav(config: VocoderConfig | None = None) -> Token2Wav:
    """Build a smoke-initialised Token2Wav (default: the smoke preset) from the current RNG state."""
    model = Token2Wav(config if config is not None else VocoderConfig.preset("smoke"))
    hift = model.hift
    for module in hift.modules():
        if isinstance(module, nn.Conv1d):
            fan_in = module.weight.shape[1] * module.weight.shape[2]
        elif isinstance(module, nn.ConvTranspose1d):
            fan_in = module.weight.shape[0] * module.weight.shape[2] // module.stride[0]
        else:
            continue
        nn.init.normal_(module.weight, 0.0, 1.0 / math.sqrt(fan_in))
    hift.conv_post.weight.mul_(_POST_WEIGHT_SCALE)
    bins = hift.config.n_fft // 2 + 1
    bias = hift.conv_post.bias
    assert bias is not None
    bias.zero_()
    bias[:bins] = _LOG_MAGNITUDE_BIAS - _LOG_MAGNITUDE_TILT * torch.arange(bins)
    hift.f0_predictor.classifier.weight.mul_(0.1)
    hift.f0_predictor.classifier.bias.fill_(SMOKE_F0_HZ)
    return model
