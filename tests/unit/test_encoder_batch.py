"""Batched encoder streams (issue 11): many streams in one pass compute what each computes alone.

The acceptance bar: streams of different ages and work sizes batched == the same streams one at a
time (and == the whole-utterance encoder); a stream joining or leaving leaves the others' outputs
as they were; distinct inputs give distinct outputs; a pass that raises leaves every stream as it
was, so rerunning it gives the outputs it would have given; empty work inside a batch is fine.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from services.encoder import EncoderConfig, EncoderState, EncoderStream, SpeechEncoder, build_smoke, encode_batch
from services.smoke_seeds import ENCODER_SEED

# Batched and one-at-a-time differ only in matmul shapes (float32 rounding), as streaming vs whole.
ATOL = 1e-5
FIRST, CHUNK = 3760, 3840  # smoke: samples of the first 240 ms chunk, then of each further one

Step = dict[int, tuple[int, bool]]  # stream index -> (samples pushed, final)


@pytest.fixture(scope="module")
def model() -> SpeechEncoder:
    return build_smoke(ENCODER_SEED)


def voices(count: int, seconds: float = 4.0) -> list[np.ndarray]:
    """Distinct speech-like signals: harmonic tones at different pitches plus noise."""
    t = np.arange(int(seconds * 16000)) / 16000
    out = []
    for i in range(count):
        rng = np.random.default_rng(i)
        f0 = 110 + 25 * i + 30 * np.sin(2 * np.pi * (0.5 + 0.1 * i) * t)
        phase = 2 * np.pi * np.cumsum(f0) / 16000
        pcm = 0.2 * sum(np.sin(k * phase) / k for k in range(1, 5)) + 0.02 * rng.standard_normal(t.size)
        out.append(np.clip(pcm, -1, 1).astype(np.float32))
    return out


def run(
    model: SpeechEncoder, pcms: list[np.ndarray], schedule: list[Step], *, batched: bool
) -> tuple[list[list[torch.Tensor]], list[int]]:
    """Feed each step's pieces, batched (prepare + one encode_batch) or push by push; per-stream outputs."""
    streams = [model.new_stream() for _ in pcms]
    pos = [0] * len(pcms)
    outs: list[list[torch.Tensor]] = [[] for _ in pcms]
    final_sizes: list[int] = []
    for step in schedule:
        pieces = {i: pcms[i][pos[i] : pos[i] + n] for i, (n, _) in step.items()}
        if batched:
            work = [streams[i].prepare(pieces[i], final) for i, (_, final) in step.items()]
            final_sizes += [w.size for w in work if w.final]
            results = encode_batch(model, work)
        else:
            results = [streams[i].push(pieces[i], final) for i, (_, final) in step.items()]
        for (i, (n, _)), result in zip(step.items(), results, strict=True):
            outs[i].append(result)
            pos[i] += n
    return outs, final_sizes


def steady(first: int, steps: int, last: int | None = None) -> list[int]:
    """Chunk pushes: the first one ``first`` samples, then full chunks; ``last`` replaces the final one."""
    sizes = [first] + [CHUNK] * (steps - 1)
    return sizes if last is None else [*sizes[:-1], last]


def schedule_of(plans: dict[int, tuple[int, list[int]]], *, end: bool = True) -> list[Step]:
    """Stream -> (joining step, pushes); with ``end``, each stream's last push is final."""
    length = max(start + len(sizes) for start, sizes in plans.values())
    steps: list[Step] = [{} for _ in range(length)]
    for i, (start, sizes) in plans.items():
        for k, n in enumerate(sizes):
            steps[start + k][i] = (n, end and k == len(sizes) - 1)
    return steps


# Five streams: different ages (joining at steps 0-3), two chunks at once, a push that completes
# nothing (empty work), final flushes of partial chunks, streams ending while others go on.
MIXED = schedule_of(
    {
        0: (0, steady(FIRST, 9, last=1234)),
        1: (0, [FIRST + CHUNK, CHUNK, 2000]),
        2: (0, [100, FIRST - 100, CHUNK, CHUNK, 5000]),
        3: (1, steady(FIRST, 7, last=777)),
        4: (3, [FIRST + CHUNK, *[CHUNK] * 4, 0]),
    }
)


def assert_same(got: list[list[torch.Tensor]], want: list[list[torch.Tensor]]) -> None:
    for stream_got, stream_want in zip(got, want, strict=True):
        assert [t.shape for t in stream_got] == [t.shape for t in stream_want]
        for a, b in zip(stream_got, stream_want, strict=True):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_batched_equals_one_at_a_time_and_whole(model: SpeechEncoder) -> None:
    pcms = voices(5)
    batched, final_sizes = run(model, pcms, MIXED, batched=True)
    single, _ = run(model, pcms, MIXED, batched=False)
    assert_same(batched, single)
    assert any(n % 2 for n in final_sizes), "a final flush of an odd LFR count exercises the projector pad"
    assert any(t.shape[0] == 0 for t in batched[2]), "an empty work inside a batch"
    assert any(t.shape[0] == 4 for t in batched[1]), "two chunks at once"
    for i, pcm in enumerate(pcms):
        total = sum(n for step in MIXED for j, (n, _) in step.items() if j == i)
        torch.testing.assert_close(torch.cat(batched[i]), model.encode(pcm[:total]), atol=ATOL, rtol=0)


def test_batched_equals_one_at_a_time_with_minmo_chunking() -> None:
    """600 ms chunks, a context that is not a whole number of chunks (kernel 13 > 1 chunk), tp blocks."""
    config = replace(
        EncoderConfig.preset("smoke"),
        chunk_frames=10,
        left_chunks=1,
        kernel_size=13,
        tp_blocks=2,
        d_model=32,
        llm_dim=32,
    )
    torch.manual_seed(0)
    model = SpeechEncoder(config).eval()
    assert model.context_frames == 12
    first, chunk = 9520, 9600
    plan = schedule_of(
        {
            0: (0, [first, chunk, chunk, chunk, 2345]),
            1: (1, [first + chunk, chunk, 4000]),
            2: (2, [first, 777]),
        }
    )
    pcms = voices(3, seconds=6.0)
    batched, _ = run(model, pcms, plan, batched=True)
    assert_same(batched, run(model, pcms, plan, batched=False)[0])
    for i, pcm in enumerate(pcms):
        total = sum(n for step in plan for j, (n, _) in step.items() if j == i)
        torch.testing.assert_close(torch.cat(batched[i]), model.encode(pcm[:total]), atol=ATOL, rtol=0)


def test_joining_and_leaving_streams_leave_the_others_alone(model: SpeechEncoder) -> None:
    pcms = voices(4)
    alone = schedule_of({0: (0, steady(FIRST, 8)), 1: (0, steady(FIRST + CHUNK, 7))})
    crowded = schedule_of(
        {
            0: (0, steady(FIRST, 8)),
            1: (0, steady(FIRST + CHUNK, 7)),
            2: (0, [FIRST, CHUNK, 999]),  # leaves after step 2
            3: (4, steady(FIRST, 4)),  # joins at step 4
        }
    )
    pair, _ = run(model, pcms, alone, batched=True)
    four, _ = run(model, pcms, crowded, batched=True)
    assert_same(four[:2], pair[:2])


def test_distinct_inputs_give_distinct_outputs(model: SpeechEncoder) -> None:
    pcms = voices(3)
    pcms.append(pcms[0].copy())  # stream 3 hears what stream 0 hears
    outs, _ = run(model, pcms, schedule_of({i: (0, steady(FIRST, 6)) for i in range(4)}), batched=True)
    per_stream = [torch.cat(o) for o in outs]
    for a in range(3):
        for b in range(a + 1, 3):
            assert (per_stream[a] - per_stream[b]).abs().max() > 1e-2, (a, b)
    torch.testing.assert_close(per_stream[3], per_stream[0], atol=ATOL, rtol=0)


def snapshot(stream: EncoderStream) -> tuple[EncoderState, int, int, int, bool]:
    """What a stream is: its state object (replaced, never mutated, on success) and its counters."""
    return stream.state, stream.state.start, stream.frames_emitted, stream.samples_needed, stream.finished


def assert_unchanged(streams: list[EncoderStream], before: list[tuple[EncoderState, int, int, int, bool]]) -> None:
    for stream, (state, *counters) in zip(streams, before, strict=True):
        now_state, *now_counters = snapshot(stream)
        assert now_state is state and now_counters == counters


@pytest.mark.parametrize("failing", ["encoders.1.feed_forward", "projector.blocks.1.self_attn"])
def test_a_failed_pass_changes_no_stream_and_can_be_rerun(
    model: SpeechEncoder, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    pcms = voices(3)
    warmup = schedule_of({0: (0, steady(FIRST, 5)), 1: (0, steady(FIRST + CHUNK, 2)), 2: (2, [FIRST])}, end=False)
    expected, _ = run(
        model, pcms, [*warmup, {0: (CHUNK, False), 1: (CHUNK, False), 2: (CHUNK + 10, True)}], batched=True
    )

    streams = [model.new_stream() for _ in pcms]
    pos = [0, 0, 0]
    for step in warmup:
        work = [streams[i].prepare(pcms[i][pos[i] : pos[i] + n], final) for i, (n, final) in step.items()]
        encode_batch(model, work)
        for i, (n, _) in step.items():
            pos[i] += n
    sizes = [CHUNK, CHUNK, CHUNK + 10]
    work = [s.prepare(pcms[i][pos[i] : pos[i] + sizes[i]], i == 2) for i, s in enumerate(streams)]
    before = [snapshot(s) for s in streams]

    def boom(*args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("simulated failure inside the batched pass")

    monkeypatch.setattr(model.get_submodule(failing), "forward", boom)
    with pytest.raises(RuntimeError, match="simulated failure"):
        encode_batch(model, work)
    assert_unchanged(streams, before)
    monkeypatch.undo()

    # The adapter's fallback: the same work, stream by stream, gives what the batch would have.
    results = [encode_batch(model, [w])[0] for w in work]
    for i, result in enumerate(results):
        torch.testing.assert_close(result, expected[i][-1], atol=ATOL, rtol=0)


def test_work_is_refused_when_stale_duplicated_or_foreign(model: SpeechEncoder) -> None:
    pcm = voices(1)[0]
    stream = model.new_stream()
    work = stream.prepare(pcm[:FIRST])
    with pytest.raises(ValueError, match="two works of one stream"):
        encode_batch(model, [work, work])
    with pytest.raises(ValueError, match="another encoder"):
        encode_batch(build_smoke(ENCODER_SEED), [work])
    assert stream.frames_emitted == 0
    assert encode_batch(model, [work])[0].shape == (2, model.config.llm_dim)
    with pytest.raises(ValueError, match="stale encoder work"):
        encode_batch(model, [work])
    assert stream.frames_emitted == 2


def test_bad_pcm_in_prepare_leaves_the_stream_unchanged(model: SpeechEncoder) -> None:
    stream = model.new_stream()
    stream.push(voices(1)[0][:1000])
    before = [snapshot(stream)]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        stream.prepare(np.full(5000, 2.0, dtype=np.float32))
    assert_unchanged([stream], before)


def test_all_empty_work_runs_no_pass(model: SpeechEncoder) -> None:
    streams = [model.new_stream() for _ in range(3)]
    work = [s.prepare(np.zeros(n, dtype=np.float32)) for s, n in zip(streams, (0, 10, FIRST - 1), strict=True)]
    assert [r.shape for r in encode_batch(model, work)] == [(0, model.config.llm_dim)] * 3
    assert encode_batch(model, []) == []


@pytest.mark.parametrize(
    ("config", "first", "chunk"),
    [
        (EncoderConfig.preset("smoke"), 3760, 3840),
        # The minmo geometry (600 ms chunks) on a tiny network.
        (replace(EncoderConfig.preset("smoke"), chunk_frames=10, left_chunks=2, d_model=32, llm_dim=32), 9520, 9600),
    ],
)
def test_samples_needed_is_exact(config: EncoderConfig, first: int, chunk: int) -> None:
    torch.manual_seed(0)
    model = SpeechEncoder(config).eval()
    pcm = voices(1, seconds=6.0)[0]
    stream, pos, rng = model.new_stream(), 0, np.random.default_rng(0)
    assert stream.samples_needed == first
    for k in range(3):
        part = int(rng.integers(0, stream.samples_needed))  # any split of the samples before the chunk
        assert stream.push(pcm[pos : pos + part]).shape[0] == 0
        pos += part
        needed = stream.samples_needed
        assert needed == (first if k == 0 else chunk) - part
        assert stream.push(pcm[pos : pos + needed - 1]).shape[0] == 0
        assert stream.samples_needed == 1
        assert stream.push(pcm[pos + needed - 1 : pos + needed]).shape[0] == config.chunk_frames // 2
        pos += needed
        assert stream.samples_needed == chunk
    stream.push(pcm[:0], final=True)
    assert stream.samples_needed == 0
