"""CosyVoice2-0.5B as released (issue 16): no spk2info.pt, zero-shot speaker files, GAN-prefixed hift.pt.

The flow.pt / hift.pt here have the key names and shapes of FunAudioLLM/CosyVoice's own modules
(``layout="upstream"``, recorded from upstream, see ``cosyvoice2_upstream_layout.json``), not ours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import save_file

from orchestrator import cli
from services import vocoder
from services.importers.cli import run_import
from services.importers.cosyvoice2 import import_cosyvoice2
from services.importers.errors import CheckpointError
from services.importers.qwen2 import import_qwen2
from services.importers.synthetic.cosyvoice2 import (
    VOICES,
    build_cosyvoice2_folder,
    upstream_states,
    zero_shot_spk2info,
)
from services.importers.synthetic.qwen2 import build_qwen2_folder
from services.importers.voice_sources import read_prompt
from services.importers.voices import VoiceEmbedder, load_voices
from services.importers.weight_norm import fold_weight_norm


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    out = tmp_path / "weights"
    build_qwen2_folder(tmp_path / "qwen")
    import_qwen2(tmp_path / "qwen", out)
    return out


def prompt_wav(path: Path, rate: int = 24000, seconds: float = 1.5) -> Path:
    """A stereo recording at 24 kHz: the importer must average the channels and resample to 16 kHz."""
    t = np.arange(int(rate * seconds)) / rate
    left = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    right = 0.2 * np.sin(2 * np.pi * 240 * t)
    soundfile.write(str(path), np.stack([left, right], axis=1).astype(np.float32), rate)
    return path


def test_the_release_without_voices_is_refused_naming_the_ways_to_give_one(tmp_path: Path, weights: Path) -> None:
    build_cosyvoice2_folder(tmp_path / "cv", layout="upstream", voices=None)
    with pytest.raises(CheckpointError, match=r"has no spk2info\.pt .*--voice NAME=prompt\.wav .*--voices"):
        import_cosyvoice2(tmp_path / "cv", weights)
    assert not (weights / "vocoder").exists() and not (weights / "speech_lm").exists()


def test_the_release_imports_with_a_voice_from_a_prompt_recording(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "cv"
    build_cosyvoice2_folder(source, layout="upstream", voices=None)
    wav = prompt_wav(tmp_path / "anna.wav")
    code = cli.main(["models", "import", "cosyvoice2", str(source), "--out", str(weights), "--voice", f"anna={wav}"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "1 from prompt" in out.out
    voices = load_voices(weights / "vocoder")
    expected = VoiceEmbedder(source / "campplus.onnx")(read_prompt(wav))
    assert list(voices) == ["anna"]
    np.testing.assert_array_equal(voices["anna"].numpy(), expected)
    model = vocoder.load(weights / "vocoder")
    assert torch.equal(model.default_speaker, voices["anna"])
    assert model.synthesize([1, 2, 3]).shape == (2880,)
    pcm = read_prompt(wav)
    assert pcm.dtype == np.float32 and pcm.shape == (24000,)  # 1.5 s at 16 kHz, mono


def test_a_voices_file_and_a_clashing_name(tmp_path: Path, weights: Path) -> None:
    source = tmp_path / "cv"
    build_cosyvoice2_folder(source, layout="upstream", voices=None)
    voices_file = tmp_path / "v.safetensors"
    save_file({"ben": torch.randn(192), "cleo": torch.randn(192)}, str(voices_file))
    import_cosyvoice2(source, weights, voices_files=[voices_file], default_voice="cleo")
    voices = load_voices(weights / "vocoder")
    assert sorted(voices) == ["ben", "cleo"]
    assert torch.equal(vocoder.load(weights / "vocoder").default_speaker, voices["cleo"])
    wav = prompt_wav(tmp_path / "p.wav")
    with pytest.raises(CheckpointError, match=r"voice names given twice \(prompt .*\): ben; rename one"):
        import_cosyvoice2(source, tmp_path / "w2", voices_files=[voices_file], prompts={"ben": wav})
    with pytest.raises(CheckpointError, match=r"--voice 'ben': expected NAME=path/to/prompt\.wav"):
        run_import("cosyvoice2", source, tmp_path / "w3", voice_prompts=["ben"])
    save_file({"wide": torch.randn(256)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match=r"voice 'wide' is \(256,\), expected \(192,\)"):
        import_cosyvoice2(source, tmp_path / "w4", voices_files=[tmp_path / "bad.safetensors"])


def test_zero_shot_speakers_saved_by_cosyvoice2_become_voices(tmp_path: Path, weights: Path) -> None:
    build_cosyvoice2_folder(tmp_path / "cv", layout="upstream", voices="zero_shot")
    import_cosyvoice2(tmp_path / "cv", weights)
    voices = load_voices(weights / "vocoder")
    saved = zero_shot_spk2info()
    assert sorted(voices) == sorted(VOICES)
    for name in VOICES:
        assert torch.equal(voices[name], saved[name]["flow_embedding"].reshape(192))


def test_gan_prefixed_hift_imports_like_the_plain_one(tmp_path: Path, weights: Path) -> None:
    build_cosyvoice2_folder(tmp_path / "plain", layout="upstream")
    build_cosyvoice2_folder(tmp_path / "gan", layout="upstream", hift_prefix="generator.")
    assert all(k.startswith("generator.") for k in torch.load(tmp_path / "gan" / "hift.pt", weights_only=True))
    import_cosyvoice2(tmp_path / "plain", tmp_path / "w_plain")
    import_cosyvoice2(tmp_path / "gan", weights)
    plain = vocoder.load(tmp_path / "w_plain" / "vocoder").state_dict()
    gan = vocoder.load(weights / "vocoder").state_dict()
    assert plain.keys() == gan.keys()
    assert all(torch.equal(plain[k], gan[k]) for k in plain)


def test_every_upstream_tensor_lands_in_the_vocoder(tmp_path: Path, weights: Path) -> None:
    """Upstream's names and shapes (not ours) import strictly, each tensor into the parameter of its name."""
    build_cosyvoice2_folder(tmp_path / "cv", layout="upstream")
    import_cosyvoice2(tmp_path / "cv", weights)
    state = vocoder.load(weights / "vocoder").state_dict()
    flow, hift = upstream_states()
    for key, tensor in flow.items():
        assert torch.equal(state[f"flow.{key}"], tensor), key
    for key, tensor in fold_weight_norm(hift).items():
        torch.testing.assert_close(state[f"hift.{key}"], tensor, atol=1e-6, rtol=1e-6)
