"""sensevoice, cosyvoice2 and minmo importers on tiny folders with the real layouts; all stages load strictly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator import cli
from services import duplex, encoder, speech_lm, vocoder
from services.common.weights import WeightsError
from services.importers.cosyvoice2 import import_cosyvoice2
from services.importers.errors import CheckpointError
from services.importers.minmo import import_minmo
from services.importers.qwen2 import import_qwen2
from services.importers.sensevoice import import_sensevoice
from services.importers.synthetic.cosyvoice2 import VOICES, build_cosyvoice2_folder, llm_state, spk2info
from services.importers.synthetic.minmo import build_minmo_folder
from services.importers.synthetic.qwen2 import build_qwen2_folder
from services.importers.synthetic.sensevoice import build_sensevoice_folder, sensevoice_state
from services.importers.voices import load_voices

LLM = 64  # hidden size of the tiny Qwen2 folder


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    out = tmp_path / "weights"
    build_qwen2_folder(tmp_path / "qwen")
    import_qwen2(tmp_path / "qwen", out)
    return out


def test_sensevoice_maps_funasr_keys_and_am_mvn(tmp_path: Path, weights: Path) -> None:
    source = build_sensevoice_folder(tmp_path / "sv")
    lines = import_sensevoice(tmp_path / "sv", weights)
    assert "pending" in lines[0]
    with pytest.raises(WeightsError, match=r"missing keys: projector\.conv\.bias, projector\.conv\.weight"):
        encoder.load(weights / "encoder")  # the projector comes with the minmo import
    build_minmo_folder(tmp_path / "minmo", llm=LLM, encoder_width=32, speech_lm_width=32)
    build_cosyvoice2_folder(tmp_path / "cv")
    import_cosyvoice2(tmp_path / "cv", weights)
    import_minmo(tmp_path / "minmo", weights)
    model = encoder.load(weights / "encoder")
    state = model.state_dict()
    assert model.config.d_model == 32 and model.config.num_blocks == 2 and model.config.tp_blocks == 1
    assert model.config.llm_dim == LLM and model.config.projector_heads == 4
    for key in ("encoders0.0.self_attn.linear_q_k_v.weight", "tp_encoders.0.self_attn.fsmn_block.weight"):
        assert torch.equal(state[key], source[f"encoder.{key}"])
    torch.testing.assert_close(state["frontend.add_shift"], source["am.add_shift"], atol=1e-6, rtol=0)
    torch.testing.assert_close(state["frontend.rescale"], source["am.rescale"], atol=1e-6, rtol=0)
    pcm = (0.1 * np.sin(np.arange(16000) / 7.0)).astype(np.float32)
    assert model.encode(pcm).shape == (encoder.count_output_frames(16000, model.config), LLM)


def test_sensevoice_wrong_shape_and_stray_key(tmp_path: Path, weights: Path) -> None:
    state = sensevoice_state()
    state["encoder.encoders.0.self_attn.fsmn_block.weight"] = torch.zeros(32, 1, 5)
    build_sensevoice_folder(tmp_path / "sv", state=state)
    with pytest.raises(
        CheckpointError, match=r"encoders\.0\.self_attn\.fsmn_block\.weight: expected \(32, 1, 11\), got \(32, 1, 5\)"
    ):
        import_sensevoice(tmp_path / "sv", weights)
    state = sensevoice_state()
    state["decoder.weight"] = torch.zeros(1)
    build_sensevoice_folder(tmp_path / "sv2", state=state)
    with pytest.raises(CheckpointError, match=r"unexpected keys outside encoder\.\*: decoder\.weight"):
        import_sensevoice(tmp_path / "sv2", weights)
    assert not (weights / "encoder").exists()


def test_cosyvoice2_vocoder_reproduces_the_source_model(tmp_path: Path, weights: Path) -> None:
    reference = build_cosyvoice2_folder(tmp_path / "cv")
    import_cosyvoice2(tmp_path / "cv", weights, default_voice=VOICES[1])
    model = vocoder.load(weights / "vocoder")
    assert model.config == reference.config
    voices = load_voices(weights / "vocoder")
    expected = spk2info()
    assert sorted(voices) == sorted(VOICES)
    assert torch.equal(voices[VOICES[0]], expected[VOICES[0]]["embedding"].reshape(192))
    assert torch.equal(model.default_speaker, voices[VOICES[1]])
    tokens = [1, 5, 6560, 42, 7, 7, 300]
    speaker = voices[VOICES[0]]
    np.testing.assert_allclose(model.synthesize(tokens, speaker), reference.synthesize(tokens, speaker), atol=1e-5)
    assert (weights / "vocoder" / "campplus.onnx").is_file()


def test_cosyvoice2_speech_lm_strips_the_body_prefix(tmp_path: Path, weights: Path) -> None:
    build_cosyvoice2_folder(tmp_path / "cv")
    import_cosyvoice2(tmp_path / "cv", weights)
    with pytest.raises(WeightsError, match=r"missing keys: output_projector\.bias, output_projector\.weight"):
        speech_lm.load(weights / "speech_lm")
    build_sensevoice_folder(tmp_path / "sv")
    import_sensevoice(tmp_path / "sv", weights)
    build_minmo_folder(tmp_path / "minmo", llm=LLM, encoder_width=32, speech_lm_width=32)
    import_minmo(tmp_path / "minmo", weights)
    model = speech_lm.load(weights / "speech_lm")
    source = llm_state()
    state = model.state_dict()
    assert model.config.llm_hidden_size == LLM and model.config.width == 32
    assert torch.equal(
        state["llm.layers.1.self_attn.k_proj.bias"], source["llm.model.model.layers.1.self_attn.k_proj.bias"]
    )
    assert torch.equal(state["llm_decoder.weight"], source["llm_decoder.weight"])
    assert not any("embed_tokens" in k or "lm_head" in k for k in state)
    stream = model.new_stream(torch.randn(2 * LLM), seed=3)
    assert stream is not None


def test_cosyvoice2_wrong_key_and_wrong_shape(tmp_path: Path, weights: Path) -> None:
    state = llm_state()
    state["llm.model.model.layers.0.mlp.gate.weight"] = state.pop("llm.model.model.layers.0.mlp.gate_proj.weight")
    build_cosyvoice2_folder(tmp_path / "cv", llm=state)
    with pytest.raises(CheckpointError) as err:
        import_cosyvoice2(tmp_path / "cv", weights)
    assert "missing keys: llm.layers.0.mlp.gate_proj.weight" in str(err.value)
    assert "unexpected keys: llm.layers.0.mlp.gate.weight" in str(err.value)
    _, flow, _ = __import__("services.importers.synthetic.cosyvoice2", fromlist=["x"]).token2wav_states()
    flow["encoder_proj.weight"] = torch.zeros(80, 32)
    build_cosyvoice2_folder(tmp_path / "cv2", flow=flow)
    with pytest.raises(CheckpointError, match=r"flow\.encoder_proj\.weight: expected \(80, 512\), got \(80, 32\)"):
        import_cosyvoice2(tmp_path / "cv2", weights)
    assert not (weights / "vocoder").exists() and not (weights / "speech_lm").exists()


def test_minmo_completes_every_stage_through_the_cli(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_sensevoice_folder(tmp_path / "sv")
    build_cosyvoice2_folder(tmp_path / "cv")
    files = build_minmo_folder(tmp_path / "minmo", llm=LLM, encoder_width=32, speech_lm_width=32)
    code = cli.main(["models", "import", "minmo", str(tmp_path / "minmo"), "--out", str(weights)])
    assert code == 1 and "run `minmo models import sensevoice" in capsys.readouterr().err
    for kind, folder in (("sensevoice", "sv"), ("cosyvoice2", "cv"), ("minmo", "minmo")):
        code = cli.main(["models", "import", kind, str(tmp_path / folder), "--out", str(weights)])
        assert code == 0, capsys.readouterr().err
    predictor = duplex.load(weights / "duplex")
    assert predictor.config.llm_dim == LLM and predictor.config.d_model == 32
    assert torch.equal(predictor.state_dict()["classifier.weight"], files["duplex"]["classifier.weight"])
    logits = predictor(torch.randn(1, 5, LLM), torch.zeros(1, 5, dtype=torch.long))
    assert logits.shape == (1, 5, 3)
    assert torch.equal(
        encoder.load(weights / "encoder").state_dict()["projector.conv.weight"], files["input_projector"]["conv.weight"]
    )


def test_minmo_projector_width_must_match_the_backbone(tmp_path: Path, weights: Path) -> None:
    build_sensevoice_folder(tmp_path / "sv")
    import_sensevoice(tmp_path / "sv", weights)
    build_cosyvoice2_folder(tmp_path / "cv")
    import_cosyvoice2(tmp_path / "cv", weights)
    build_minmo_folder(tmp_path / "minmo", llm=48, encoder_width=32, speech_lm_width=32)
    with pytest.raises(CheckpointError, match=r"projector\.blocks\.0\.norm1\.weight: expected \(64,\), got \(48,\)"):
        import_minmo(tmp_path / "minmo", weights)


def test_synthetic_cosyvoice_files_carry_the_release_key_names(tmp_path: Path) -> None:
    """Names read off FunAudioLLM/CosyVoice's modules, so the synthetic files cannot drift to ours."""
    build_cosyvoice2_folder(tmp_path / "cv")
    flow = torch.load(tmp_path / "cv" / "flow.pt", weights_only=True)
    hift = torch.load(tmp_path / "cv" / "hift.pt", weights_only=True)
    for key in (
        "input_embedding.weight",
        "spk_embed_affine_layer.weight",
        "encoder.embed.out.0.weight",
        "encoder.embed.out.1.weight",
        "encoder.pre_lookahead_layer.conv1.weight",
        "encoder.encoders.0.self_attn.pos_bias_u",
        "encoder.encoders.0.self_attn.linear_pos.weight",
        "encoder.up_layer.conv.weight",
        "encoder.up_encoders.3.norm_ff.weight",
        "encoder_proj.weight",
        "decoder.estimator.time_mlp.linear_1.weight",
        "decoder.estimator.down_blocks.0.0.block1.block.0.weight",
        "decoder.estimator.down_blocks.0.0.block1.block.2.weight",
        "decoder.estimator.down_blocks.0.1.0.attn1.to_q.weight",
        "decoder.estimator.mid_blocks.0.1.0.ff.net.0.proj.weight",
        "decoder.estimator.up_blocks.0.1.0.ff.net.2.weight",
        "decoder.estimator.final_proj.weight",
    ):
        assert key in flow, key
    for key in (
        "m_source.l_linear.weight",
        "conv_pre.parametrizations.weight.original0",
        "ups.2.parametrizations.weight.original1",
        "source_downs.0.weight",
        "resblocks.0.convs1.1.parametrizations.weight.original0",
        "resblocks.0.activations1.0.alpha",
        "f0_predictor.condnet.8.parametrizations.weight.original1",
        "f0_predictor.classifier.weight",
        "conv_post.parametrizations.weight.original0",
    ):
        assert key in hift, key
