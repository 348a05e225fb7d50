"""push_batch: many vocoder streams advanced in one pass give what each stream gives alone.

These are the acceptance tests of cross-session batching for the vocoder (issue 11): streams at
different ages and push sizes, joining and leaving, with empty pushes, final pushes and their own
speakers, match the same streams pushed one at a time to 1e-5; the flow and HiFT really run once
per batch; and a batch that raises changes no stream, so the adapter can rerun it item by item.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import nn

from services.common.seeding import seeded
from services.vocoder import Token2Wav, VocoderStream, build_smoke, push_batch
from services.vocoder.smoke import smoke_token2wav

ATOL = 1e-5

# One plan per stream: the round it joins the batch, its token count and push sizes (the last push
# is final; 0 is an empty push), and its speaker seed (None: the default speaker).
Plan = tuple[int, int, list[int], int | None]
PLANS: list[Plan] = [
    (0, 75, [15, 15, 15, 15, 15], None),  # the speak path: 15 tokens per request
    (0, 33, [5, 0, 15, 13], 3),  # small first push, an empty push, its own speaker
    (1, 40, [15, 15, 10], None),  # joins late, leaves early
    (2, 20, [20], None),  # one final push with everything
    (0, 62, [15, 15, 15, 17], 4),
    (3, 0, [0], None),  # an empty utterance: one empty final push
    (1, 9, [1, 2, 0, 6], None),  # pushes too small to emit anything at first
]


@pytest.fixture(scope="module")
def model() -> Token2Wav:
    return build_smoke(0)


@pytest.fixture(scope="module")
def chunky() -> Token2Wav:
    """25-token-like chunking at smoke size: most pushes end inside a chunk, commits vary per stream."""
    base = build_smoke(0).config
    config = dataclasses.replace(base, flow=dataclasses.replace(base.flow, chunk_size=5, left_chunks=2))
    with seeded(0):
        return smoke_token2wav(config).eval()


def tokens(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 6561, n)


def speaker(seed: int | None) -> torch.Tensor | None:
    return None if seed is None else torch.randn(192, generator=torch.Generator().manual_seed(seed))


def pushes(plan: Plan, seed: int) -> list[tuple[np.ndarray, bool]]:
    _, n, sizes, _ = plan
    ids, bounds = tokens(n, seed), np.cumsum([0, *sizes])
    return [(ids[a:b], k == len(sizes) - 1) for k, (a, b) in enumerate(itertools.pairwise(bounds))]


def alone(model: Token2Wav, plans: list[Plan]) -> list[list[np.ndarray]]:
    """Every stream pushed on its own, one push at a time."""
    outs = []
    for seed, plan in enumerate(plans):
        stream = model.new_stream(speaker(plan[3]))
        outs.append([stream.push(ids, final) for ids, final in pushes(plan, seed)])
    return outs


def batched(model: Token2Wav, plans: list[Plan]) -> tuple[list[list[np.ndarray]], list[VocoderStream]]:
    """Round r pushes, in one push_batch call, the r-th push of every stream that joined by then."""
    streams = [model.new_stream(speaker(plan[3])) for plan in plans]
    todo = [pushes(plan, seed) for seed, plan in enumerate(plans)]
    outs: list[list[np.ndarray]] = [[] for _ in plans]
    for r in range(max(plan[0] + len(plan[2]) for plan in plans)):
        members = [i for i, plan in enumerate(plans) if 0 <= r - plan[0] < len(todo[i])]
        work = [streams[i].prepare(*todo[i][r - plans[i][0]]) for i in members]
        for i, audio in zip(members, push_batch(model, work), strict=True):
            outs[i].append(audio)
    return outs, streams


def assert_same(got: list[list[np.ndarray]], expected: list[list[np.ndarray]]) -> None:
    for stream_got, stream_expected in zip(got, expected, strict=True):
        assert [len(a) for a in stream_got] == [len(a) for a in stream_expected]
        for a, b in zip(stream_got, stream_expected, strict=True):
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=0, atol=ATOL)


@pytest.mark.parametrize("which", ["model", "chunky"])
def test_a_batch_of_streams_at_different_ages_gives_what_each_gives_alone(
    which: str, request: pytest.FixtureRequest
) -> None:
    vocoder: Token2Wav = request.getfixturevalue(which)
    got, streams = batched(vocoder, PLANS)
    assert_same(got, alone(vocoder, PLANS))
    assert all(stream.finished for stream in streams)
    assert [stream.samples_emitted for stream in streams] == [960 * plan[1] for plan in PLANS]


def test_who_joins_or_leaves_the_batch_does_not_change_a_stream(model: Token2Wav) -> None:
    steady = PLANS[0]
    crowds = [[steady], [steady, PLANS[2]], [steady, PLANS[3], PLANS[5]], [steady, *PLANS[1:]]]
    # the steady stream keeps seed 0 (its tokens) in every crowd; the others come and go around it
    runs = [batched(model, crowd)[0][0] for crowd in crowds]
    for run in runs[1:]:
        assert_same([run], [runs[0]])


def test_distinct_streams_in_one_batch_get_distinct_audio(model: Token2Wav) -> None:
    ids = [tokens(30, seed) for seed in range(3)]
    streams = [model.new_stream(), model.new_stream(), model.new_stream(), model.new_stream(speaker(7))]
    inputs = [ids[0], ids[1], ids[0], ids[0]]  # stream 2 repeats stream 0; stream 3 has its own speaker
    outs = push_batch(model, [s.prepare(x, final=True) for s, x in zip(streams, inputs, strict=True)])
    np.testing.assert_allclose(outs[2], outs[0], rtol=0, atol=ATOL)
    rms = float(np.sqrt(np.mean(outs[0] ** 2)))
    for other in (outs[1], outs[3]):
        assert float(np.sqrt(np.mean((other - outs[0]) ** 2))) > 0.05 * rms


def test_empty_work_and_an_empty_batch(model: Token2Wav) -> None:
    assert push_batch(model, []) == []
    busy, idle, fresh = model.new_stream(), model.new_stream(), model.new_stream()
    busy.push(tokens(15, 0))
    idle.push(tokens(15, 1))
    outs = push_batch(model, [busy.prepare(tokens(15, 2)), idle.prepare([]), fresh.prepare(np.zeros(0, np.int64))])
    assert len(outs[0]) == 15 * 960 and len(outs[1]) == len(outs[2]) == 0
    assert outs[1].dtype == outs[2].dtype == np.float32
    assert idle.tokens_received == 15 and fresh.tokens_received == 0


def test_the_flow_and_hift_run_once_per_batch(model: Token2Wav) -> None:
    streams = [model.new_stream() for _ in range(4)]
    push_batch(model, [s.prepare(tokens(30, i)) for i, s in enumerate(streams)])
    calls = {"estimator": 0, "encoder": 0, "hift": 0}

    def count(name: str) -> Callable[..., None]:
        def hook(*_: object) -> None:
            calls[name] += 1

        return hook

    hooks = [
        model.flow.decoder.estimator.register_forward_hook(count("estimator")),
        model.flow.encoder.register_forward_hook(count("encoder")),
        model.hift.conv_post.register_forward_hook(count("hift")),
    ]
    try:  # steady state: every stream pushes 15 tokens into a full window
        push_batch(model, [s.prepare(tokens(15, 10 + i)) for i, s in enumerate(streams)])
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"estimator": model.config.flow.n_timesteps, "encoder": 1, "hift": 1}


@pytest.fixture
def history(model: Token2Wav) -> Iterator[list[VocoderStream]]:
    """Three streams at different ages (one fresh) with cached keys, mel, phases and tails."""
    streams = [model.new_stream(), model.new_stream(speaker(5)), model.new_stream()]
    streams[0].push(tokens(40, 0))
    streams[1].push(tokens(15, 1))
    yield streams


def snapshot(stream: VocoderStream) -> tuple[int, int, int, bool]:
    return stream.tokens_received, stream.samples_emitted, stream.cache_bytes, stream.finished


@pytest.mark.parametrize(
    "where",
    ["flow.encoder.up_encoders.0", "flow.decoder.estimator.final_proj", "hift.conv_post", "hift.f0_predictor"],
)
def test_a_batch_that_raises_changes_no_stream(
    model: Token2Wav, history: list[VocoderStream], where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [(tokens(15, 20), False), (tokens(15, 21), False), (tokens(18, 22), True)]
    reference = [model.new_stream(), model.new_stream(speaker(5)), model.new_stream()]
    reference[0].push(tokens(40, 0))
    reference[1].push(tokens(15, 1))
    expected = [s.push(ids, final) for s, (ids, final) in zip(reference, items, strict=True)]
    before = [snapshot(s) for s in history]

    def boom(*_: object, **__: object) -> torch.Tensor:
        raise RuntimeError("simulated kernel failure")

    module = model.get_submodule(where)
    assert isinstance(module, nn.Module)
    monkeypatch.setattr(module, "forward", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        push_batch(model, [s.prepare(ids, final) for s, (ids, final) in zip(history, items, strict=True)])
    assert [snapshot(s) for s in history] == before
    monkeypatch.undo()
    # the adapter's fallback: the same items one stream at a time, then the rest as a batch
    first = history[0].push(*items[0])
    rest = push_batch(model, [s.prepare(ids, final) for s, (ids, final) in zip(history[1:], items[1:], strict=True)])
    assert_same([[first], *[[audio] for audio in rest]], [[audio] for audio in expected])


def test_bad_work_is_refused_before_anything_changes(model: Token2Wav, history: list[VocoderStream]) -> None:
    before = [snapshot(s) for s in history]
    with pytest.raises(ValueError, match="outside"):
        history[0].prepare([1, 99999])
    with pytest.raises(ValueError, match="at most one push per stream"):
        push_batch(model, [history[0].prepare([1]), history[1].prepare([2]), history[0].prepare([3])])
    with pytest.raises(ValueError, match="model that runs the batch"):
        push_batch(model, [history[0].prepare([1]), build_smoke(0).new_stream().prepare([2])])
    stale = history[2].prepare([4, 5])
    history[2].push([6], final=True)
    with pytest.raises(ValueError, match="final=True"):
        push_batch(model, [history[0].prepare([1]), stale])
    with pytest.raises(ValueError, match="final=True"):
        history[2].prepare([7])
    assert [snapshot(s) for s in history[:2]] == before[:2]


def test_hift_renders_equal_windows_as_a_batch(model: Token2Wav) -> None:
    hift = model.hift
    mel = model.mel(tokens(24, 0))
    starts, lead = [5, 12, 20], 5
    windows = torch.stack([mel[:, s - lead : s + 20] for s in starts])
    phase0 = torch.rand(3, hift.harmonics, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        audio, phases = hift.render_batch(windows, starts, phase0, lead)
        for row, start in enumerate(starts):
            one, one_phases = hift.render(windows[row], start, phase0[row], lead)
            torch.testing.assert_close(audio[row], one, rtol=0, atol=ATOL)
            torch.testing.assert_close(phases[row], one_phases, rtol=0, atol=1e-9)
