"""CAM++ voice-prompt embedding via onnxruntime, the ONNX signature checks and the HyperPyYAML reader."""

from __future__ import annotations

from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import pytest

from services.importers.errors import CheckpointError
from services.importers.hyperyaml import load_hyperpyyaml
from services.importers.synthetic.cosyvoice2 import YAML
from services.importers.synthetic.onnx_models import build_campplus, build_speech_tokenizer
from services.importers.voices import VoiceEmbedder, check_campplus, check_speech_tokenizer, embed_voice


def test_embed_voice_runs_campplus_on_mean_normalised_kaldi_fbank(tmp_path: Path) -> None:
    weight = build_campplus(tmp_path / "campplus.onnx", seed=4)
    t = np.arange(16000) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    embedding = embed_voice(wav, tmp_path / "campplus.onnx")
    assert embedding.shape == (192,) and embedding.dtype == np.float32
    # CosyVoice: kaldi.fbank(num_mel_bins=80, dither=0, 16 kHz) on [-1, 1] samples, minus the mean frame.
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(16000, wav)
    fbank.input_finished()
    feats = np.array([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
    assert feats.shape == (98, 80)
    feats -= feats.mean(axis=0)
    # The synthetic CAM++ averages over time then projects: the mean-normalised input averages to zero.
    np.testing.assert_allclose(embedding, feats.mean(axis=0) @ weight, atol=1e-4)
    np.testing.assert_allclose(embedding, 0.0, atol=1e-3)


def test_voice_embedder_rejects_bad_prompts(tmp_path: Path) -> None:
    build_campplus(tmp_path / "campplus.onnx")
    embedder = VoiceEmbedder(tmp_path / "campplus.onnx")
    with pytest.raises(ValueError, match="at least one 25 ms frame"):
        embedder(np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError, match=r"in \[-1, 1\]"):
        embedder(np.full(1600, 3.0, dtype=np.float32))


def test_onnx_signature_checks_name_what_is_wrong(tmp_path: Path) -> None:
    build_campplus(tmp_path / "wide.onnx", out_dim=256)
    with pytest.raises(CheckpointError, match=r"output \[batch, 192\].*\('output', \['B', 256\]\)"):
        check_campplus(tmp_path / "wide.onnx")
    build_campplus(tmp_path / "ok.onnx")
    assert check_campplus(tmp_path / "ok.onnx") == "input"
    build_speech_tokenizer(tmp_path / "tok.onnx")
    check_speech_tokenizer(tmp_path / "tok.onnx")
    with pytest.raises(CheckpointError, match="expected inputs \\(feats"):
        check_speech_tokenizer(tmp_path / "ok.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="is not an ONNX model"):
        check_campplus(tmp_path / "junk.onnx")


def test_hyperpyyaml_tags_and_refs_resolve_without_cosyvoice(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(YAML)
    doc = load_hyperpyyaml(tmp_path / "c.yaml", overrides={"qwen_pretrain_path": "/x/CosyVoice-BlankEN"})
    assert doc["flow"]["__tag__"] == "!new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec"
    assert doc["flow"]["spk_embed_dim"] == 192
    assert doc["flow"]["decoder"]["estimator"]["static_chunk_size"] == 50  # <chunk_size> * <token_mel_ratio>
    assert doc["llm"]["llm"]["pretrain_path"] == "/x/CosyVoice-BlankEN"
    assert doc["flow"]["decoder"]["cfm_params"]["content"]["inference_cfg_rate"] == 0.7
    (tmp_path / "bad.yaml").write_text("a: !ref <nowhere>\n")
    with pytest.raises(CheckpointError, match=r"!ref <nowhere> at bad\.yaml\.a names no key"):
        load_hyperpyyaml(tmp_path / "bad.yaml")
