"""Duplex predictor: shapes, causality within the window, streaming == whole, save/load, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.common.weights import WeightsError
from services.duplex import (
    Decision,
    DuplexConfig,
    DuplexPredictor,
    build_smoke,
    load,
    save,
)
from services.duplex.fingerprint import weights_fingerprint
from services.smoke_seeds import DUPLEX_SEED

STREAM_ATOL = 1e-5  # chunked vs whole: same math, different matmul shapes


def _inputs(t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(t, 256, generator=g)
    speaking = torch.rand(t, generator=g) > 0.5
    return hidden, speaking


def test_decision_values_are_the_wire_contract() -> None:
    assert [int(d) for d in Decision] == [0, 1, 2]
    assert Decision(1) is Decision.RESPOND_NOW and Decision(2) is Decision.STOP_SPEAKING


def test_forward_shapes_and_determinism() -> None:
    model = build_smoke(DUPLEX_SEED)
    hidden, speaking = _inputs(40)
    logits = model(torch.stack([hidden, hidden]), torch.stack([speaking, speaking]))
    assert logits.shape == (2, 40, 3)
    assert torch.equal(logits[0], logits[1])
    other = build_smoke(DUPLEX_SEED)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))


def test_forward_rejects_bad_shapes() -> None:
    model = build_smoke(DUPLEX_SEED)
    with pytest.raises(ValueError, match=r"hidden must be \[B, T, 256\]"):
        model(torch.zeros(1, 5, 128), torch.zeros(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="speaking must be"):
        model(torch.zeros(1, 5, 256), torch.zeros(1, 4, dtype=torch.bool))


def test_causal_and_limited_to_window() -> None:
    model = build_smoke(DUPLEX_SEED)
    window = model.config.window
    hidden, speaking = _inputs(50)
    base = model(hidden[None], speaking[None])[0]
    changed = hidden.clone()
    changed[30] += 5.0
    out = model(changed[None], speaking[None])[0]
    assert torch.equal(out[:30], base[:30]), "a frame must not see later frames"
    assert not torch.allclose(out[30 : 30 + window], base[30 : 30 + window])
    assert torch.allclose(out[30 + window :], base[30 + window :], atol=1e-6), "frames beyond the window leak"


def test_speaking_flag_changes_the_output() -> None:
    model = build_smoke(DUPLEX_SEED)
    hidden, _ = _inputs(8)
    silent = model(hidden[None], torch.zeros(1, 8, dtype=torch.bool))
    talking = model(hidden[None], torch.ones(1, 8, dtype=torch.bool))
    assert not torch.allclose(silent, talking)


@pytest.mark.parametrize("chunks", [[1] * 45, [3, 7, 1, 16, 18], [45], [20, 0, 25]])
def test_stream_push_equals_forward(chunks: list[int]) -> None:
    model = build_smoke(DUPLEX_SEED)
    hidden, speaking = _inputs(sum(chunks), seed=1)
    expected = model(hidden[None], speaking[None])[0].softmax(-1)
    stream = model.new_stream()
    pieces, start = [], 0
    for n in chunks:
        pieces.append(stream.push(hidden[start : start + n], speaking[start : start + n]))
        start += n
    got = torch.cat(pieces)
    assert got.shape == (sum(chunks), 3)
    assert stream.frames_seen == sum(chunks)
    torch.testing.assert_close(got, expected, atol=STREAM_ATOL, rtol=0)
    torch.testing.assert_close(got.sum(-1), torch.ones(len(got)))


def test_stream_accepts_a_plain_bool_and_checks_lengths() -> None:
    model = build_smoke(DUPLEX_SEED)
    hidden, _ = _inputs(6)
    a = model.new_stream().push(hidden, True)
    b = model.new_stream().push(hidden, torch.ones(6, dtype=torch.bool))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="5 flags for 6 frames"):
        model.new_stream().push(hidden, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"hidden must be \[n, 256\]"):
        model.new_stream().push(hidden[None], True)


def test_config_round_trip_and_presets() -> None:
    config = DuplexConfig(feature_fingerprint="ab" * 32)
    assert DuplexConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown DuplexConfig fields: bogus"):
        DuplexConfig.from_dict({**config.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="unknown duplex preset"):
        DuplexConfig.preset("large")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        DuplexConfig(d_model=30, num_heads=4)


def test_minmo_size_matches_design() -> None:
    with torch.device("meta"):
        model = DuplexPredictor(DuplexConfig.preset("minmo"))
    params = sum(p.numel() for p in model.parameters())
    assert 17_000_000 < params < 19_500_000, params  # DESIGN.md: ~18M


def test_save_load_round_trip_and_stale_fingerprint(tmp_path: Path) -> None:
    model = build_smoke(DUPLEX_SEED)
    save(model, tmp_path, "smoke")
    loaded = load(tmp_path, expected_fingerprint="")
    assert not loaded.training
    hidden, speaking = _inputs(20)
    assert torch.equal(loaded(hidden[None], speaking[None]), model(hidden[None], speaking[None]))
    with pytest.raises(WeightsError, match="retrain it with"):
        load(tmp_path, expected_fingerprint="0" * 64)


def test_weights_fingerprint_tracks_every_tensor() -> None:
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert weights_fingerprint(a) == weights_fingerprint(b)
    with torch.no_grad():
        b.bias[1] += 1e-6
    assert weights_fingerprint(a) != weights_fingerprint(b)
    assert weights_fingerprint(a, b) != weights_fingerprint(b, a)
