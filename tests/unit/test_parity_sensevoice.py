"""Parity with upstream (issue 16): FunASR's own SenseVoice encoder, saved as released, imported by us.

Opt-in: needs the ``parity`` extra (``pip install -e '.[parity]'``, which ``make install`` runs:
funasr 1.4.16 installs in about a minute and changes no pinned package). The test builds FunASR's
``SenseVoiceSmall`` with random weights at small sizes, writes ``model.pt`` / ``config.yaml`` /
``am.mvn`` in the release layout, imports the folder with ``minmo models import sensevoice`` and
compares :meth:`SpeechEncoder.sanm_whole` with ``SenseVoiceSmall.encoder`` on the same features.
(FunASR's fbank frontend needs torchaudio, which pins another torch build: the features are made by
ours, and CMVN is applied to FunASR's input as ``WavFrontend`` does, ``(x + shift) * scale``.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from services.common.weights import CONFIG_FILE, read_stage_config
from services.encoder import EncoderConfig, SpeechEncoder
from services.importers.output import read_tensors
from services.importers.sensevoice import import_sensevoice
from services.importers.synthetic.sensevoice import LFR_DIM, am_mvn

pytestmark = pytest.mark.slow

ENCODER_CONF = {
    "output_size": 64,
    "attention_heads": 4,
    "linear_units": 96,
    "num_blocks": 3,
    "tp_blocks": 2,
    "kernel_size": 11,
    "sanm_shfit": 0,
    "normalize_before": True,
    "dropout_rate": 0.1,
}


@pytest.fixture(scope="module")
def upstream() -> torch.nn.Module:
    sense_voice = pytest.importorskip(
        "funasr.models.sense_voice.model", reason="the parity extra is not installed: pip install -e '.[parity]'"
    )
    torch.manual_seed(0)
    model = sense_voice.SenseVoiceSmall(
        encoder="SenseVoiceEncoderSmall", encoder_conf=dict(ENCODER_CONF), input_size=LFR_DIM, vocab_size=50
    ).eval()
    with torch.no_grad():  # norms away from 1/0 so that a mis-mapped gain or bias shows
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def release_folder(directory: Path, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """model.pt (SenseVoiceSmall's state dict: encoder.*, ctc.*, embed.*), config.yaml, am.mvn."""
    directory.mkdir(parents=True)
    torch.save(model.state_dict(), directory / "model.pt")
    config = {
        "model": "SenseVoiceSmall",
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": ENCODER_CONF,
        "frontend": "WavFrontend",
        "frontend_conf": {
            "fs": 16000,
            "window": "hamming",
            "n_mels": 80,
            "frame_length": 25,
            "frame_shift": 10,
            "lfr_m": 7,
            "lfr_n": 6,
            "cmvn_file": "am.mvn",
        },
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    gen = torch.Generator().manual_seed(1)
    shift, scale = -5 - torch.rand(LFR_DIM, generator=gen), 0.2 + 0.1 * torch.rand(LFR_DIM, generator=gen)
    (directory / "am.mvn").write_text(am_mvn(shift, scale))
    return shift, scale


def imported_encoder(out: Path, **changes: object) -> SpeechEncoder:
    """The imported (projector-pending) encoder folder as a module, projector left untouched."""
    config_dict, _ = read_stage_config(out / "encoder", stage="encoder")
    model = SpeechEncoder(dataclasses.replace(EncoderConfig.from_dict(config_dict), **changes)).eval()
    missing, unexpected = model.load_state_dict(read_tensors(out / "encoder"), strict=False)
    assert not unexpected and all(key.startswith("projector.") for key in missing)
    return model


def test_imported_sensevoice_computes_funasrs_encoder(tmp_path: Path, upstream: torch.nn.Module) -> None:
    shift, scale = release_folder(tmp_path / "sv", upstream)
    import_sensevoice(tmp_path / "sv", tmp_path / "w")
    assert (tmp_path / "w" / "encoder" / CONFIG_FILE).is_file()
    ours = imported_encoder(tmp_path / "w")
    assert ours.config.fsmn_right_context == 5 and ours.config.tp_norm and ours.config.layer_norm_eps == 1e-5

    lfr = 8.0 + 3.0 * torch.randn(37, LFR_DIM, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        features = ((lfr + shift.float()) * scale.float())[None].clone()  # FunASR scales its input in place
        want, lengths = upstream.encoder(features, torch.tensor([37]))
        got = ours.sanm_whole(lfr)
    assert int(lengths[0]) == 37
    torch.testing.assert_close(got, want[0], atol=2e-5, rtol=1e-5)

    # The test has teeth: a look-back FSMN (our streaming layout) or a chunked attention computes another function.
    with torch.inference_mode():
        assert (imported_encoder(tmp_path / "w", fsmn_right_context=0).sanm_whole(lfr) - want[0]).abs().max() > 1e-2
        assert (ours.sanm_whole(lfr, full_attention=False) - want[0]).abs().max() > 1e-2
