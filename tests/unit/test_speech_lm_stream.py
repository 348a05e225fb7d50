"""The speech-token LM: group interleaving, end-of-speech rules, cached == uncached, cancellation."""

from __future__ import annotations

import itertools

import pytest
import torch

from services.speech_lm import SpeechLM, SpeechLMConfig, build_smoke

LLM2 = 512  # 2 x the smoke backbone width


@pytest.fixture(scope="module")
def lm() -> SpeechLM:
    return build_smoke(0)


def _vectors(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, LLM2, generator=torch.Generator().manual_seed(seed))


def _query() -> torch.Tensor:
    return _vectors(1, 99)[0]


def test_smoke_config_and_shapes(lm: SpeechLM) -> None:
    config = lm.config
    assert (config.llm_hidden_size, config.width, config.body.num_hidden_layers) == (256, 128, 2)
    assert (config.speech_token_size, config.text_per_group, config.tokens_per_group) == (6561, 5, 15)
    assert lm.output_projector.weight.shape == (128, 512)
    assert lm.speech_embedding.weight.shape == (6564, 128)
    assert lm.llm_decoder.weight.shape == (6564, 128) and lm.llm_decoder.bias.shape == (6564,)
    assert lm.llm_embedding.weight.shape == (2, 128)
    assert lm.llm.embed_tokens is None
    assert lm.project(_vectors(3)).shape == (3, 128)
    with pytest.raises(ValueError, match=r"query must be \[512\]"):
        lm.new_stream(torch.zeros(256))
    assert SpeechLMConfig.from_dict(config.to_dict()) == config


def test_emits_exactly_fifteen_tokens_per_full_group(lm: SpeechLM) -> None:
    stream = lm.new_stream(_query(), seed=0)
    assert list(stream.generate(100)) == []  # no full group yet
    stream.push_semantic(_vectors(12))
    tokens = list(stream.generate(100))
    assert len(tokens) == 30 and stream.queued_semantic == 2
    stream.push_semantic(_vectors(3, 1))
    more = list(stream.generate(100, temperature=0.0))
    assert len(more) == 15 and stream.queued_semantic == 0
    assert all(0 <= t < 6561 for t in tokens + more)
    assert not stream.ended and not stream.finalized


def test_fill_and_end_of_speech_are_never_sampled_inside_groups(lm: SpeechLM) -> None:
    with torch.no_grad():
        saved = lm.llm_decoder.bias.clone()
        lm.llm_decoder.bias[6561:] += 1000.0  # end-of-speech, unused, fill: overwhelmingly likely
    try:
        stream = lm.new_stream(_query(), seed=0)
        stream.push_semantic(_vectors(7))
        grouped = list(stream.generate(50, top_k=0, top_p=1.0))
        assert len(grouped) == 15 and all(t < 6561 for t in grouped)
        assert list(stream.generate(50, until_eos=True)) == []
        assert stream.ended and stream.finalized
        assert list(stream.generate(5, until_eos=True)) == []
        with pytest.raises(ValueError, match="finalized"):
            stream.push_semantic(_vectors(5))
    finally:
        with torch.no_grad():
            lm.llm_decoder.bias.copy_(saved)


def test_until_eos_stops_at_max_tokens_and_can_continue(lm: SpeechLM) -> None:
    stream = lm.new_stream(_query(), seed=0)
    stream.push_semantic(_vectors(8))
    first = list(stream.generate(40, until_eos=True))
    # 15 for the full group, then the final run; a random model practically never says EOS.
    assert len(first) == 40 and stream.finalized and not stream.ended
    assert len(list(stream.generate(10, until_eos=True))) == 10
    assert all(0 <= t < 6561 for t in first)


def test_cached_stream_equals_full_recomputation(lm: SpeechLM) -> None:
    query, text = _query(), _vectors(13)
    stream = lm.new_stream(query, seed=0)
    stream.push_semantic(text)
    tokens = list(stream.generate(200, until_eos=True, temperature=0.0))
    assert len(tokens) == 200
    with torch.inference_mode():
        emb = lm.speech_embedding.weight
        proj = lm.project(torch.cat([query[None], text]))
        sos, task = lm.llm_embedding.weight[0:1], lm.llm_embedding.weight[1:2]
        t = torch.tensor(tokens)
        sequence = torch.cat(
            [sos, proj[:1], proj[1:6], emb[t[:15]], proj[6:11], emb[t[15:30]], proj[11:], task, emb[t[30:-1]]]
        )
        assert stream.length == sequence.shape[0] + 1  # the last token still waits in the inputs
        full = lm.llm(sequence)
        logits = lm.llm_decoder(full)
        # The same body fed the way the stream feeds it (prefix + group, then one token at a time).
        cache, pieces, start = lm.llm.new_cache(), [], 0
        for n in [7] + [1] * 15 + [5] + [1] * 30:
            pieces.append(lm.llm(sequence[start : start + n], cache))
            start += n
        torch.testing.assert_close(torch.cat(pieces), full[:start], atol=1e-5, rtol=0)
    # Positions whose output chose each token: the last input before it.
    chooser = [6, *range(7, 21), 26, *range(27, 41), 45, *range(46, 46 + 169)]
    assert len(chooser) == 200
    greedy_ok = [int(logits[p, :6561].argmax()) == tok for p, tok in zip(chooser, tokens, strict=True)]
    assert all(greedy_ok[:30])  # inside groups only speech ids compete
    final = logits[chooser[30:], :6562].argmax(-1)
    assert final.tolist() == tokens[30:]


def test_abandoned_iterator_leaves_a_stream_that_continues_exactly(lm: SpeechLM) -> None:
    whole = lm.new_stream(_query(), seed=4)
    whole.push_semantic(_vectors(10))
    expected = list(whole.generate(30))
    stream = lm.new_stream(_query(), seed=4)
    stream.push_semantic(_vectors(10))
    head = list(itertools.islice(stream.generate(30), 7))
    tail = list(stream.generate(30))
    assert head + tail == expected


def test_seeded_sampling_is_reproducible(lm: SpeechLM) -> None:
    runs = []
    for seed in (1, 1, 2):
        stream = lm.new_stream(_query(), seed=seed)
        stream.push_semantic(_vectors(5))
        runs.append(list(stream.generate(15)))
    assert runs[0] == runs[1] != runs[2]
