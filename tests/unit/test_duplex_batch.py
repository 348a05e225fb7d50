"""Batched duplex streams (issue 11): many streams in one pass score what each scores alone.

Streams differ in how much context they hold (0 .. window-1 frames, or a full window) and in how
many frames they push (0, 1, 2, more than a window). The bar is that of the encoder: batched ==
one at a time (== the whole-sequence forward), joining/leaving streams change nothing for the
others, distinct inputs give distinct outputs, a failed pass changes no stream.
"""

from __future__ import annotations

import pytest
import torch

from services.duplex import DuplexPredictor, DuplexStream, build_smoke
from services.duplex.batch import score_batch
from services.smoke_seeds import DUPLEX_SEED

ATOL = 1e-5  # batched vs one at a time: same math, different matmul shapes
Step = dict[int, int]  # stream index -> frames pushed


@pytest.fixture(scope="module")
def model() -> DuplexPredictor:
    model = build_smoke(DUPLEX_SEED)
    with torch.no_grad():  # untrained bias is zero: give it values so that the distance indexing matters
        model.layer.self_attn.relative_bias.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    return model


def inputs(streams: int, frames: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(streams)
    return [(torch.randn(frames, 256, generator=g), torch.rand(frames, generator=g) > 0.5) for _ in range(streams)]


def run(
    model: DuplexPredictor, data: list[tuple[torch.Tensor, torch.Tensor]], schedule: list[Step], *, batched: bool
) -> list[list[torch.Tensor]]:
    streams = [model.new_stream() for _ in data]
    pos = [0] * len(data)
    outs: list[list[torch.Tensor]] = [[] for _ in data]
    for step in schedule:
        pieces = {i: (data[i][0][pos[i] : pos[i] + n], data[i][1][pos[i] : pos[i] + n]) for i, n in step.items()}
        if batched:
            results = score_batch(model, [streams[i].prepare(*pieces[i]) for i in step])
        else:
            results = [streams[i].push(*pieces[i]) for i in step]
        for (i, n), result in zip(step.items(), results, strict=True):
            outs[i].append(result)
            pos[i] += n
    return outs


# Stream 0 pushes 2 frames a step (one 240 ms chunk); 1 joins late; 2 pushes 0/1/3 frames and more
# than a window at once; 3 leaves early; 4 stays young (fewer than window-1 frames) most of the run.
MIXED: list[Step] = [
    {0: 2, 1: 0, 2: 1, 3: 5},
    {0: 2, 2: 20, 3: 2, 4: 1},
    {0: 2, 1: 3, 2: 0, 3: 9},
    {0: 2, 1: 2, 2: 3, 4: 2},
    *[{0: 2, 1: 2, 2: 2, 4: 1} for _ in range(8)],
    {0: 2, 1: 17, 4: 0},
]


def assert_same(got: list[list[torch.Tensor]], want: list[list[torch.Tensor]]) -> None:
    for stream_got, stream_want in zip(got, want, strict=True):
        assert [t.shape for t in stream_got] == [t.shape for t in stream_want]
        for a, b in zip(stream_got, stream_want, strict=True):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_batched_equals_one_at_a_time_and_whole(model: DuplexPredictor) -> None:
    data = inputs(5)
    batched = run(model, data, MIXED, batched=True)
    assert_same(batched, run(model, data, MIXED, batched=False))
    for i, (hidden, speaking) in enumerate(data):
        total = sum(step.get(i, 0) for step in MIXED)
        whole = model(hidden[None, :total], speaking[None, :total])[0].softmax(-1)
        torch.testing.assert_close(torch.cat(batched[i]), whole, atol=ATOL, rtol=0)


def test_joining_and_leaving_streams_leave_the_others_alone(model: DuplexPredictor) -> None:
    data = inputs(4)
    pair = run(model, data, [{0: 2, 1: 2}] * 12, batched=True)
    crowd = [{0: 2, 1: 2, 2: 5} for _ in range(3)] + [{0: 2, 1: 2, 3: 2} for _ in range(9)]
    assert_same(run(model, data, crowd, batched=True)[:2], pair[:2])


def test_distinct_inputs_give_distinct_outputs(model: DuplexPredictor) -> None:
    data = inputs(3)
    data.append(data[0])
    outs = [torch.cat(o) for o in run(model, data, [dict.fromkeys(range(4), 2)] * 10, batched=True)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert (outs[a] - outs[b]).abs().max() > 1e-2, (a, b)
    torch.testing.assert_close(outs[3], outs[0], atol=ATOL, rtol=0)


def snapshot(stream: DuplexStream) -> tuple[torch.Tensor, int]:
    return stream.cache, stream.frames_seen


@pytest.mark.parametrize("failing", ["layer.fc2", "classifier"])
def test_a_failed_pass_changes_no_stream_and_can_be_rerun(
    model: DuplexPredictor, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    data = inputs(3)
    warmup: list[Step] = [{0: 7, 1: 2}, {0: 2, 1: 2, 2: 1}]
    last: Step = {0: 2, 1: 3, 2: 2}
    expected = run(model, data, [*warmup, last], batched=True)
    streams = [model.new_stream() for _ in data]
    for i, s in enumerate(streams):
        start = sum(step.get(i, 0) for step in warmup)
        s.push(data[i][0][:start], data[i][1][:start])
    work = [
        s.prepare(data[i][0][s.frames_seen :][: last[i]], data[i][1][s.frames_seen :][: last[i]])
        for i, s in enumerate(streams)
    ]
    before = [snapshot(s) for s in streams]

    def boom(*args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("simulated failure inside the batched pass")

    monkeypatch.setattr(model.get_submodule(failing), "forward", boom)
    with pytest.raises(RuntimeError, match="simulated failure"):
        score_batch(model, work)
    for s, (cache, seen) in zip(streams, before, strict=True):
        assert s.cache is cache and s.frames_seen == seen
    monkeypatch.undo()
    for i, result in enumerate(score_batch(model, work)):
        torch.testing.assert_close(result, expected[i][-1], atol=ATOL, rtol=0)


def test_work_is_refused_when_stale_duplicated_or_foreign(model: DuplexPredictor) -> None:
    hidden, speaking = inputs(1)[0]
    stream = model.new_stream()
    work = stream.prepare(hidden[:2], speaking[:2])
    with pytest.raises(ValueError, match="two works of one stream"):
        score_batch(model, [work, work])
    with pytest.raises(ValueError, match="another duplex model"):
        score_batch(build_smoke(DUPLEX_SEED), [work])
    assert stream.frames_seen == 0
    assert score_batch(model, [work])[0].shape == (2, 3)
    with pytest.raises(ValueError, match="stale duplex work"):
        score_batch(model, [work])
    assert stream.frames_seen == 2


def test_prepare_only_validates(model: DuplexPredictor) -> None:
    stream = model.new_stream()
    with pytest.raises(ValueError, match=r"hidden must be \[n, 256\]"):
        stream.prepare(torch.zeros(2, 128), True)
    with pytest.raises(ValueError, match="1 flags for 2 frames"):
        stream.prepare(torch.zeros(2, 256), torch.ones(1, dtype=torch.bool))
    work = stream.prepare(torch.zeros(2, 256, dtype=torch.float64), True)
    assert work.hidden.dtype == torch.float32 and work.speaking.tolist() == [True, True]
    assert stream.frames_seen == 0


def test_empty_work_inside_a_batch_and_alone(model: DuplexPredictor) -> None:
    data = inputs(2)
    streams = [model.new_stream() for _ in data]
    results = score_batch(model, [streams[0].prepare(data[0][0][:0], True), streams[1].prepare(data[1][0][:3], False)])
    assert [r.shape for r in results] == [(0, 3), (3, 3)]
    assert [s.frames_seen for s in streams] == [0, 3]
    assert score_batch(model, [streams[0].prepare(data[0][0][:0], False)])[0].shape == (0, 3)
    assert score_batch(model, []) == []
