"""Backbone sessions: append/generate against full recomputation, fork, truncate, cancel, weights."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from services.backbone import Backbone, BackboneSession, SmokeByteTokenizer, build_smoke, load, save
from services.common.weights import WeightsError

TOK = SmokeByteTokenizer()


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return build_smoke(0)


def _prompted(backbone: Backbone, text: str = "hello, world") -> BackboneSession:
    session = backbone.new_session()
    session.append(ids=TOK.encode(text))
    return session


def test_build_smoke_is_deterministic_and_seed_dependent() -> None:
    a, b, c = build_smoke(0).state_dict(), build_smoke(0).state_dict(), build_smoke(1).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])
    assert not build_smoke(0).training


def test_append_returns_the_appended_positions_states(backbone: Backbone) -> None:
    session = backbone.new_session()
    assert session.append(ids=[1, 2, 3]).shape == (3, 256)
    assert session.append(embeds=torch.randn(7, 256)).shape == (7, 256)
    assert session.length == 10
    with pytest.raises(ValueError, match="exactly one of ids or embeds"):
        session.append()
    with pytest.raises(ValueError, match=r"embeds must be \[n >= 1, 256\]"):
        session.append(embeds=torch.randn(3, 128))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        session.append(ids=[TOK.vocab_size])
    assert session.length == 10


def test_generation_matches_full_recomputation(backbone: Backbone) -> None:
    prompt = TOK.encode("Tell me a story.")
    speech = torch.randn(5, 256, generator=torch.Generator().manual_seed(1))
    session = backbone.new_session()
    session.append(ids=prompt)
    session.append(embeds=speech)
    # Sampled, not greedy: a random tiny model repeats one argmax token, which would test little.
    tokens = list(session.generate(12, temperature=1.0, seed=0))
    assert len(tokens) == 12 and session.length == len(prompt) + 5 + 12
    ids = [t.token_id for t in tokens]
    assert len(set(ids)) > 3
    with torch.inference_mode():
        x = torch.cat([backbone.embed(torch.tensor(prompt)), speech, backbone.embed(torch.tensor(ids))])
        hidden = backbone.model(x)
    first = len(prompt) + 5 - 1  # the state each generated token was sampled from
    for i, token in enumerate(tokens):
        assert token.hidden.shape == token.embedding.shape == (256,)
        torch.testing.assert_close(token.hidden, hidden[first + i], atol=1e-5, rtol=0)
        torch.testing.assert_close(token.embedding, x[first + 1 + i], atol=0, rtol=0)
    with torch.inference_mode():
        greedy = [t.token_id for t in _prompted(backbone).generate(3)]
        assert greedy[0] == int(backbone(torch.tensor(TOK.encode("hello, world")))[-1].argmax())


def test_greedy_is_reproducible_and_sampling_follows_the_seed(backbone: Backbone) -> None:
    greedy = [[t.token_id for t in _prompted(backbone).generate(10)] for _ in range(2)]
    assert greedy[0] == greedy[1]
    sampled = [
        [t.token_id for t in _prompted(backbone).generate(20, temperature=1.5, top_k=50, top_p=0.95, seed=s)]
        for s in (7, 7, 8)
    ]
    assert sampled[0] == sampled[1] != sampled[2]


def test_stop_ids_end_generation_without_entering_the_context(backbone: Backbone) -> None:
    ids = [t.token_id for t in _prompted(backbone).generate(10, temperature=1.0, seed=3)]
    stop = ids[3]
    expected = ids[: ids.index(stop)]
    session = _prompted(backbone)
    length = session.length
    got = [t.token_id for t in session.generate(10, temperature=1.0, seed=3, stop_ids=[stop])]
    assert got == expected and session.length == length + len(expected)


def test_abandoned_iterator_leaves_a_context_that_continues_exactly(backbone: Backbone) -> None:
    whole = [(t.token_id, t.hidden) for t in _prompted(backbone).generate(10, temperature=1.0, seed=5)]
    session = _prompted(backbone)
    first = [(t.token_id, t.hidden) for t in itertools.islice(session.generate(10, temperature=1.0, seed=5), 4)]
    assert session.length == len(TOK.encode("hello, world")) + 4
    # The sampler's state is per call, so the continuation is checked greedily from here.
    rest = [(t.token_id, t.hidden) for t in session.generate(6)]
    session_b = _prompted(backbone)
    session_b.append(ids=[i for i, _ in first])
    whole = whole[:4] + [(t.token_id, t.hidden) for t in session_b.generate(6)]
    assert [i for i, _ in first + rest] == [i for i, _ in whole]
    for (_, a), (_, b) in zip(first + rest, whole, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_fork_is_independent(backbone: Backbone) -> None:
    session = _prompted(backbone)
    fork = session.fork()
    extra = TOK.encode(" and something else entirely")
    fork_states = fork.append(ids=extra)
    fork_ids = [t.token_id for t in fork.generate(5, temperature=1.0, seed=1)]
    # The original continues as if the fork never existed ...
    got = [t.token_id for t in session.generate(8, temperature=1.0, seed=2)]
    assert got == [t.token_id for t in _prompted(backbone).generate(8, temperature=1.0, seed=2)]
    # ... and the fork as if it had been built directly.
    direct = _prompted(backbone)
    torch.testing.assert_close(fork_states, direct.append(ids=extra), atol=1e-5, rtol=0)
    assert fork_ids == [t.token_id for t in direct.generate(5, temperature=1.0, seed=1)]
    assert fork.length == len(TOK.encode("hello, world")) + len(extra) + 5


def test_truncate_forgets_positions_and_resumes_generation(backbone: Backbone) -> None:
    prompt_len = len(TOK.encode("hello, world"))
    session = _prompted(backbone)
    ids = [t.token_id for t in session.generate(10, temperature=1.0, seed=4)]
    session.truncate(prompt_len + 3)
    assert session.length == prompt_len + 3
    reference = _prompted(backbone)
    reference.append(ids=ids[:3])
    expected = [t.token_id for t in reference.generate(7, temperature=1.0, seed=9)]
    assert [t.token_id for t in session.generate(7, temperature=1.0, seed=9)] == expected
    # Cut an interrupted turn, then close it: the same states as a context built that way.
    session.truncate(prompt_len + 2)
    closing = session.append(ids=[TOK.eos_id])
    fresh = _prompted(backbone)
    fresh.append(ids=ids[:2])
    torch.testing.assert_close(closing, fresh.append(ids=[TOK.eos_id]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="cannot truncate"):
        session.truncate(session.length + 1)
    session.truncate(0)
    with pytest.raises(ValueError, match="context is empty"):
        session.generate(1)


def test_generation_refuses_to_pass_max_position_embeddings(backbone: Backbone) -> None:
    session = backbone.new_session()
    session.append(embeds=torch.zeros(4090, 256))
    with pytest.raises(ValueError, match=r"holds 4090 positions and 7 more would exceed max_position_embeddings 4096"):
        session.generate(7)
    assert len(list(session.generate(6))) == 6
    with pytest.raises(ValueError, match="max_position_embeddings 4096"):
        session.append(ids=[1])


def test_save_load_round_trip(tmp_path: Path, backbone: Backbone) -> None:
    save(backbone, tmp_path / "backbone", "smoke")
    loaded = load(tmp_path / "backbone")
    assert loaded.config == backbone.config and not loaded.training
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    ids = [t.token_id for t in _prompted(loaded).generate(6)]
    assert ids == [t.token_id for t in _prompted(backbone).generate(6)]


def test_load_names_a_mis_shaped_key(tmp_path: Path, backbone: Backbone) -> None:
    folder = tmp_path / "backbone"
    save(backbone, folder, "smoke")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["model.layers.1.self_attn.k_proj.weight"] = torch.zeros(32, 256)
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(
        WeightsError, match=r"model.layers.1.self_attn.k_proj.weight: file \(32, 256\) != model \(64, 256\)"
    ):
        load(folder)
