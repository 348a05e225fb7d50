"""The GPU backbone's bridge on the CPU: speech rows as fake ids + prompt table, stream context, response pairing."""

from __future__ import annotations

import numpy as np
import pytest

from services.gpu_profile.engine_context import EngineContext, speech_extra_id, to_engine_input
from services.gpu_profile.trtllm_adapter import (
    EngineContractError,
    EngineStep,
    backbone_responses,
)

VOCAB, WIDTH = 100, 4


def rows(n: int, start: float = 0.0) -> np.ndarray:
    return (start + np.arange(n * WIDTH, dtype=np.float32)).reshape(n, WIDTH)


def test_speech_rows_become_ids_at_and_above_the_vocabulary() -> None:
    speech = rows(3)
    out = to_engine_input([5, 6], speech, [7], vocab_size=VOCAB)
    assert out.input_ids.tolist() == [5, 6, 100, 101, 102, 7]
    assert out.input_ids.dtype == np.int32
    np.testing.assert_array_equal(out.prompt_table, speech)
    assert out.prompt_vocab_size == 3
    assert out.extra_ids[[0, 1, 5]].tolist() == [0, 0, 0]
    assert all(e > 0 for e in out.extra_ids[2:5])
    # Ids index the table: id - vocab_size is the row.
    table_rows = out.input_ids[out.input_ids >= VOCAB] - VOCAB
    np.testing.assert_array_equal(out.prompt_table[table_rows], speech)


def test_rows_already_in_the_context_offset_the_fake_ids() -> None:
    out = to_engine_input([], rows(2), [], vocab_size=VOCAB, first_row=5)
    assert out.input_ids.tolist() == [105, 106]


def test_extra_ids_follow_the_audio_content_not_the_position() -> None:
    a, b = rows(1), rows(1, start=1.0)
    assert speech_extra_id(a[0]) == speech_extra_id(a[0].copy())
    assert speech_extra_id(a[0]) != speech_extra_id(b[0])


def test_text_ids_outside_the_vocabulary_are_refused() -> None:
    with pytest.raises(ValueError, match=r"SUFFIX_IDS holds ids outside \[0, 100\): \[100\]"):
        to_engine_input([1], None, [100], vocab_size=VOCAB)


def test_context_truncate_drops_the_speech_rows_it_no_longer_references() -> None:
    context = EngineContext(VOCAB, WIDTH, max_length=64, max_rows=16)
    context.append([1, 2], rows(3), [3])  # positions 0..5, rows 0..2
    context.append([4], rows(2, start=50.0), [])  # positions 6..8, rows 3..4
    assert context.length == 9
    context.truncate(4)  # keeps ids 1, 2 and rows 0, 1
    assert context.ids == [1, 2, 100, 101]
    assert len(context.rows) == 2
    context.append([], rows(1, start=90.0), [])
    assert context.ids[-1] == 102, "the next speech row takes the first free table row"
    inp = context.engine_input()
    np.testing.assert_array_equal(inp.prompt_table[2], rows(1, start=90.0)[0])


def test_fork_is_independent_and_refused_appends_change_nothing() -> None:
    context = EngineContext(VOCAB, WIDTH, max_length=6, max_rows=2)
    context.append([1], rows(2), [])
    twin = context.fork()
    twin.commit_token(9)
    assert context.ids == [1, 100, 101] and twin.ids == [1, 100, 101, 9]
    with pytest.raises(ValueError, match="max_prompt_rows 2"):
        context.append([], rows(1), [])
    with pytest.raises(ValueError, match="exceed the engine's max_seq_len 6"):
        context.append([1, 2, 3, 4], None, [])
    assert context.ids == [1, 100, 101] and len(context.rows) == 2


def embed(token_id: int) -> np.ndarray:
    return np.full(WIDTH, float(token_id), np.float32)


def test_responses_pair_each_token_with_the_state_it_was_sampled_from() -> None:
    context = EngineContext(VOCAB, WIDTH, max_length=64, max_rows=16)
    context.append([1, 2], None, [])
    appended = context.append([3], rows(1), [])  # 2 new positions
    context_hidden = rows(5, start=1000.0)  # the engine recomputed 5 positions (1 reused)
    steps = [
        EngineStep([7], context_hidden),
        EngineStep([8], rows(1, start=2000.0)),
        EngineStep([9], rows(1, start=3000.0)),
    ]
    out = list(
        backbone_responses(
            steps, context=context, appended=appended, max_new_tokens=3, stop_ids=frozenset({99}), embed=embed
        )
    )
    prefill, *tokens = out
    assert prefill["TOKEN_IDS"].shape == (1, 0)
    np.testing.assert_array_equal(prefill["HIDDEN"][0], context_hidden[-2:])
    assert prefill["CONTEXT_LENGTH"].tolist() == [[4]]
    assert [t["TOKEN_IDS"].tolist() for t in tokens] == [[[7]], [[8]], [[9]]]
    np.testing.assert_array_equal(tokens[0]["HIDDEN"][0], context_hidden[-1:])
    np.testing.assert_array_equal(tokens[1]["HIDDEN"][0], rows(1, start=2000.0))
    np.testing.assert_array_equal(tokens[2]["EMBEDDINGS"][0], embed(9)[None])
    assert [t["CONTEXT_LENGTH"].item() for t in tokens] == [5, 6, 7]
    assert context.ids[-3:] == [7, 8, 9]


def test_a_stop_id_ends_the_stream_unyielded_and_max_new_tokens_zero_is_prefill_only() -> None:
    context = EngineContext(VOCAB, WIDTH, max_length=64, max_rows=16)
    appended = context.append([1, 2], None, [])
    steps = [EngineStep([7], rows(2)), EngineStep([99], rows(1)), EngineStep([8], rows(1))]
    out = list(
        backbone_responses(
            steps, context=context, appended=appended, max_new_tokens=5, stop_ids=frozenset({99}), embed=embed
        )
    )
    assert [r["TOKEN_IDS"].tolist() for r in out] == [[[]], [[7]]]
    assert context.ids == [1, 2, 7]
    only = list(
        backbone_responses(steps[:1], context=context, appended=0, max_new_tokens=0, stop_ids=frozenset(), embed=embed)
    )
    assert len(only) == 1 and only[0]["HIDDEN"].shape == (1, 0, WIDTH)
    assert context.ids == [1, 2, 7], "the token the engine had to sample is not committed"


def test_an_engine_without_the_hidden_output_is_named() -> None:
    context = EngineContext(VOCAB, WIDTH, max_length=64, max_rows=16)
    appended = context.append([1, 2, 3], None, [])
    with pytest.raises(EngineContractError, match="1 context hidden rows for 3 appended positions"):
        list(
            backbone_responses(
                [EngineStep([7], rows(1))],
                context=context,
                appended=appended,
                max_new_tokens=1,
                stop_ids=frozenset(),
                embed=embed,
            )
        )
