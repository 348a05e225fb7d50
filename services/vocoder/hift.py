"""HiFT vocoder (CosyVoice 2's ``HiFTGenerator``): 50 Hz mel -> 24 kHz PCM, 480 samples per frame.

A neural-source-filter model: an F0 predictor drives a harmonic sine + noise source; the mel is
upsampled by ConvTranspose stages (8, 5, 3) with residual blocks, mixed with the downsampled STFT
of the source at every stage, and ``conv_post`` predicts log-magnitude and phase for an iSTFT
(n_fft 16, hop 4). Weight norm is folded into plain weights (the importer folds real checkpoints).

``render`` vocodes any window of frames given the source phase at its first frame, so a stream can
re-render a short overlap around each join and stay phase-continuous with what it already played.
The sine phase ramps linearly inside each frame from the previous frame's end (SineGen's per-sample
cumsum); CosyVoice 2's SineGen2 interpolates the same cumulative phase between frame centres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MEL_FRAME_SAMPLES, HiftConfig
from .noise import PositionalNoise


class Snake(nn.Module):
    """x + sin^2(alpha * x) / alpha, with one learnt alpha per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.alpha[None, :, None]
        return x + torch.sin(x * alpha).pow(2) / (alpha + 1e-9)


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=(kernel - 1) * d // 2) for d in dilations
        )
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations)
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: Tensor) -> Tensor:
        for conv1, conv2, act1, act2 in zip(
            self.convs1, self.convs2, self.activations1, self.activations2, strict=True
        ):
            x = x + conv2(act2(conv1(act1(x))))
        return x


class ConvRNNF0Predictor(nn.Module):
    """Five kernel-3 convolutions with ELU and a linear head; |output| is F0 in Hz per mel frame."""

    context = 5  # frames on each side that one F0 value depends on

    def __init__(self, in_channels: int, cond_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(5):
            layers += [nn.Conv1d(in_channels if i == 0 else cond_channels, cond_channels, 3, padding=1), nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(cond_channels, 1)

    def forward(self, mel: Tensor) -> Tensor:
        return self.classifier(self.condnet(mel).transpose(1, 2)).squeeze(-1).abs()


class SourceModuleHnNSF(nn.Module):
    """Merges the harmonic sines (+ noise) of the NSF source into one channel."""

    def __init__(self, harmonics: int) -> None:
        super().__init__()
        self.l_linear = nn.Linear(harmonics, 1)

    def forward(self, sines: Tensor, noise: Tensor, sine_gain: Tensor, noise_gain: Tensor) -> Tensor:
        """``tanh(l_linear(sines * sine_gain + noise * noise_gain))`` for sines ``[B, N, H]``, noise
        ``[B, H, N]`` and per-sample gains ``[B, N]`` -> ``[B, N]``.

        The gains are the same for every harmonic, so the harmonics are merged first and the gains
        applied to one channel instead of nine: the same value up to float rounding, at a fraction
        of the passes over the audio-rate tensors (the largest in the vocoder).
        """
        weight = self.l_linear.weight[0]
        merged = sine_gain * (sines @ weight) + noise_gain * torch.matmul(weight, noise)
        return torch.tanh(merged + self.l_linear.bias)


class HiFTGenerator(nn.Module):
    stft_window: Tensor

    def __init__(self, config: HiftConfig) -> None:
        super().__init__()
        c = self.config = config
        self.num_kernels = len(c.resblock_kernel_sizes)
        self.harmonics = c.nb_harmonics + 1
        self.m_source = SourceModuleHnNSF(self.harmonics)
        self.conv_pre = nn.Conv1d(c.in_channels, c.base_channels, 7, padding=3)
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(c.base_channels >> i, c.base_channels >> (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes, strict=True))
        )
        spec_channels = c.n_fft + 2
        down_rates = [math.prod(c.upsample_rates[::-1][:i]) for i in range(len(c.upsample_rates))][::-1]
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        for i, (u, k, d) in enumerate(
            zip(down_rates, c.source_resblock_kernel_sizes, c.source_resblock_dilation_sizes, strict=True)
        ):
            ch = c.base_channels >> (i + 1)
            down = nn.Conv1d(spec_channels, ch, 1) if u == 1 else nn.Conv1d(spec_channels, ch, 2 * u, u, u // 2)
            self.source_downs.append(down)
            self.source_resblocks.append(ResBlock(ch, k, d))
        self.resblocks = nn.ModuleList(
            ResBlock(c.base_channels >> (i + 1), k, d)
            for i in range(len(c.upsample_rates))
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True)
        )
        self.conv_post = nn.Conv1d(c.base_channels >> len(c.upsample_rates), spec_channels, 7, padding=3)
        self.f0_predictor = ConvRNNF0Predictor(c.in_channels, c.f0_cond_channels)
        self.register_buffer("stft_window", torch.hann_window(c.n_fft, periodic=True), persistent=False)
        self.noise = PositionalNoise(c.noise_seed, self.harmonics, block=4800)

    def initial_phase(self) -> Tensor:
        """Seeded start phase per harmonic in cycles (float64); the fundamental starts at 0."""
        generator = torch.Generator().manual_seed(self.config.noise_seed + 7919)
        phase = torch.rand(self.harmonics, generator=generator, dtype=torch.float64, device="cpu")
        phase[0] = 0.0
        return phase

    def source(self, f0: Tensor, first_frames: Sequence[int], phase0: Tensor) -> tuple[Tensor, Tensor]:
        """F0 ``[B, T]`` (Hz) of frames from ``first_frames[b]``, start phases ``[B, H]`` -> source
        ``[B, 1, 480 T]`` and the phase at each frame boundary ``[B, T + 1, H]``."""
        c, hop, device = self.config, MEL_FRAME_SAMPLES, f0.device
        harmonic = torch.arange(1, self.harmonics + 1, dtype=torch.float64, device=device)
        steps = f0.to(torch.float64)[:, :, None] * harmonic / c.sampling_rate  # cycles per sample
        phase0 = phase0.to(device)[:, None]
        starts = torch.cat([phase0, phase0 + torch.cumsum((steps * hop) % 1.0, dim=1)], dim=1) % 1.0
        # float64 only for the running phase; within a frame float32 is exact enough (< 1e-5 cycles)
        ramp = torch.arange(1, hop + 1, dtype=torch.float32, device=device)[None, None, :, None]
        phase = torch.addcmul(starts[:, :-1, None, :].to(torch.float32), steps[:, :, None, :].to(torch.float32), ramp)
        sines = phase.mul_(2 * math.pi).sin_().flatten(1, 2)  # [B, 480 T, H]
        uv = (f0 > c.nsf_voiced_threshold).to(torch.float32).repeat_interleave(hop, dim=1)  # [B, 480 T]
        length = f0.shape[1] * hop
        noise = torch.stack([self.noise.take(first * hop, length) for first in first_frames]).to(device)
        source = self.m_source(sines, noise, c.nsf_alpha * uv, uv * c.nsf_sigma + (1 - uv) * c.nsf_alpha / 3)
        return source[:, None], starts

    def decode(self, mel: Tensor, source: Tensor) -> Tensor:
        c = self.config
        spec = torch.stft(source[:, 0], c.n_fft, c.hop_len, c.n_fft, window=self.stft_window, return_complex=True)
        s_stft = torch.cat([spec.real, spec.imag], dim=1)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, c.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](s_stft))
            x = sum(self.resblocks[i * self.num_kernels + j](x) for j in range(self.num_kernels)) / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))
        bins = c.n_fft // 2 + 1
        magnitude = torch.exp(x[:, :bins]).clamp(max=1e2)
        phase = torch.sin(x[:, bins:])
        spectrum = torch.polar(magnitude, phase)
        audio = torch.istft(spectrum, c.n_fft, c.hop_len, c.n_fft, window=self.stft_window)
        return audio.clamp(-c.audio_limit, c.audio_limit)

    def render(self, mel: Tensor, first_frame: int, phase0: Tensor, lead: int = 0) -> tuple[Tensor, Tensor]:
        """Mel ``[80, lead + T]`` -> PCM ``[480 T]`` of frames ``[first_frame, first_frame + T)``.

        The ``lead`` frames before ``first_frame`` only give the F0 predictor its left context, so
        F0 (and the phase it integrates to) matches whole-utterance synthesis from the first frame.
        Also returns the source phase at every frame boundary, ``[T + 1, harmonics]``.
        """
        audio, phases = self.render_batch(mel[None], [first_frame], phase0.to(mel.device)[None], lead)
        return audio[0], phases[0]

    def render_batch(
        self, mel: Tensor, first_frames: Sequence[int], phase0: Tensor, lead: int = 0
    ) -> tuple[Tensor, Tensor]:
        """:meth:`render` of ``B`` windows of equal length at once: mel ``[B, 80, lead + T]``, start
        phases ``[B, H]`` -> PCM ``[B, 480 T]`` and phases ``[B, T + 1, H]``.

        Only equal windows batch exactly: the convolutions pad symmetrically and the STFT reflects
        at the edges, so padding one window to another's length would change its last samples.
        """
        f0 = self.f0_predictor(mel)[:, lead:]
        source, phases = self.source(f0, first_frames, phase0)
        return self.decode(mel[:, :, lead:], source), phases
