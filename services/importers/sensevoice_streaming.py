"""How far the served encoder stream is from SenseVoice's function, on real-size random weights.

SenseVoice's encoder attends over the whole utterance and centres its FSMN kernel (5 frames of
look-ahead per layer, 70 layers); a stream that emits every 600 ms cannot see the future, so the
served encoder is an approximation of the imported one. This measures it: the same weights and the
same speech-like input through

- ``exact``: :meth:`SpeechEncoder.sanm_whole` with full attention, the upstream function (the parity
  test checks it against FunASR's ``SenseVoiceEncoderSmall``),
- ``served``: the encoder stream as the Triton model runs it (chunked attention over the chunk and
  ``left_chunks`` before it; the FSMN centred, frames not yet received read as zeros),
- ``causal``: the same stream with the FSMN shifted to look back only (the rejected alternative),

comparing the SAN-M outputs through the same projector convolution. Run:
``python -m services.importers.sensevoice_streaming [--seconds 8] [--blocks 50 --tp-blocks 20]``.
Random weights are not trained ones: the figure bounds nothing for a trained model, it only shows
the size of the effect with the real depth and width (docs/real-model.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

from services.encoder import EncoderConfig, SpeechEncoder
from services.encoder.frontend import FbankExtractor, LfrStacker

# SenseVoice-Small's encoder_conf (config.yaml of iic/SenseVoiceSmall); the serving chunking of the minmo preset.
SENSEVOICE_SMALL = {
    "d_model": 512,
    "attention_heads": 4,
    "linear_units": 2048,
    "num_blocks": 50,
    "tp_blocks": 20,
    "kernel_size": 11,
}


def imported_config(blocks: int, tp_blocks: int) -> EncoderConfig:
    """What ``minmo models import sensevoice`` writes for SenseVoice-Small (projector: its conv only)."""
    return dataclasses.replace(
        EncoderConfig.preset("minmo"),
        **{**SENSEVOICE_SMALL, "num_blocks": blocks, "tp_blocks": tp_blocks},
        fsmn_right_context=5,
        tp_norm=True,
        layer_norm_eps=1e-5,
        llm_dim=512,
        projector_layers=0,
        projector_heads=1,
    )


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A gliding harmonic voice with noise, float32 PCM at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
    pcm = envelope * sum(0.3 / k * np.sin(k * phase) for k in range(1, 8)) + 0.01 * rng.standard_normal(t.size)
    return np.clip(pcm, -1, 1).astype(np.float32)


def _stream(model: SpeechEncoder, pcm: np.ndarray) -> torch.Tensor:
    stream, outs = model.new_stream(), []
    step = model.config.sample_rate * model.config.chunk_ms // 1000
    for begin in range(0, pcm.size, step):
        outs.append(stream.push(pcm[begin : begin + step], final=begin + step >= pcm.size))
    return torch.cat(outs)


def _exact(model: SpeechEncoder, pcm: np.ndarray) -> torch.Tensor:
    lfr = torch.from_numpy(LfrStacker(model.config).push(FbankExtractor(model.config).accept(pcm), final=True))
    sanm = model.sanm_whole(lfr)
    tail = (-sanm.shape[0]) % model.projector.stride
    return model.projector._conv(F.pad(sanm, (0, 0, 0, tail))[None])[0]


def _errors(got: torch.Tensor, want: torch.Tensor) -> dict[str, float]:
    cosine = F.cosine_similarity(got, want, dim=-1)
    return {
        "relative_l2": float((got - want).norm() / want.norm()),
        "mean_cosine": float(cosine.mean()),
        "min_cosine": float(cosine.min()),
    }


@torch.inference_mode()
def measure(seconds: float = 8.0, blocks: int = 50, tp_blocks: int = 20, seed: int = 0) -> dict[str, object]:
    config = imported_config(blocks, tp_blocks)
    torch.manual_seed(seed)
    model = SpeechEncoder(config).eval()
    pcm = speech_like(seconds, seed)
    lfr = LfrStacker(config).push(FbankExtractor(config).accept(pcm), final=True)
    with torch.no_grad():  # CMVN from the utterance itself: unit-variance features, as am.mvn gives
        model.frontend.add_shift.copy_(torch.from_numpy(-lfr.mean(0)))
        model.frontend.rescale.copy_(torch.from_numpy(1.0 / (lfr.std(0) + 1e-5)))
    exact = _exact(model, pcm)
    served = _stream(model, pcm)
    causal_model = SpeechEncoder(dataclasses.replace(config, fsmn_right_context=0)).eval()
    causal_model.load_state_dict(model.state_dict())
    causal = _stream(causal_model, pcm)
    parameters = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("projector."))
    return {
        "encoder": {**SENSEVOICE_SMALL, "num_blocks": blocks, "tp_blocks": tp_blocks, "parameters": parameters},
        "seconds": seconds,
        "chunk_ms": config.chunk_ms,
        "left_chunks": config.left_chunks,
        "served_vs_exact": _errors(served, exact),
        "causal_vs_exact": _errors(causal, exact),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--blocks", type=int, default=SENSEVOICE_SMALL["num_blocks"])
    parser.add_argument("--tp-blocks", type=int, default=SENSEVOICE_SMALL["tp_blocks"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(json.dumps(measure(args.seconds, args.blocks, args.tp_blocks, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
