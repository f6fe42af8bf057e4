from __future__ import annotations

import pytest
import torch

from aigc_studio.errors import AigcError
from aigc_studio.generation import SamplingParams, beam_search, generate

BEAMS = SamplingParams(num_beams=4, n=4, max_tokens=40)


@pytest.mark.parametrize("text", ["the quick", "hello", "", "连衣"])
def test_beam_search_with_one_beam_equals_greedy(model, tokenizer, encode, text):
    # length_penalty 0 ranks by the plain sum of logprobs, the quantity greedy decoding maximises step by step;
    # with length normalisation one beam may rightly keep going after <eos> to find a better average.
    greedy = generate(model, tokenizer, [encode(text)], SamplingParams(temperature=0, max_tokens=40))[0].completions[0]
    [beam] = beam_search(model, tokenizer, encode(text), SamplingParams(num_beams=1, length_penalty=0.0, max_tokens=40))
    assert beam.token_ids == greedy.token_ids
    assert beam.text == greedy.text and beam.finish_reason == greedy.finish_reason


def test_beam_search_returns_n_hypotheses_best_first_by_length_normalised_score(model, tokenizer, encode):
    for length_penalty in (1.0, 0.0, -1.0):
        params = BEAMS.replace(length_penalty=length_penalty)
        completions = beam_search(model, tokenizer, encode("a"), params)
        assert len(completions) == params.n
        scores = [c.cumulative_logprob / len(c.token_ids) ** length_penalty for c in completions]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(c.token_ids) for c in completions}) == params.n


def test_finished_beams_end_with_eos_and_drop_it_from_the_text(model, tokenizer, encode):
    best = beam_search(model, tokenizer, encode("hello"), BEAMS)[0]
    assert best.text == " world, hello there!"
    assert best.finish_reason == "stop" and best.token_ids[-1] == tokenizer.eos_id


def test_wider_beam_finds_a_completion_at_least_as_likely_as_greedy(model, tokenizer, encode):
    greedy = generate(model, tokenizer, [encode("a")], SamplingParams(temperature=0, max_tokens=40))[0].completions[0]
    best = beam_search(model, tokenizer, encode("a"), BEAMS.replace(length_penalty=0.0))[0]
    assert best.cumulative_logprob >= greedy.cumulative_logprob - 1e-4


@pytest.mark.parametrize("text", ["cheap", ""])
def test_every_beams_logprobs_are_the_raw_model_log_softmax_of_its_own_tokens(model, tokenizer, encode, text):
    # Beams swap rows as they overtake each other; a beam reading another row's state would show up here.
    prompt = encode(text)
    completions = beam_search(model, tokenizer, prompt, BEAMS.replace(repetition_penalty=1.5, logprobs=2))
    for completion in completions:
        with torch.no_grad():
            logits, _ = model(torch.tensor([prompt + completion.token_ids]))
        expected = logits[0, len(prompt) - 1:-1].log_softmax(-1)  # (new tokens, V)
        chosen = expected.gather(1, torch.tensor(completion.token_ids)[:, None]).squeeze(1)
        assert completion.logprobs == pytest.approx(chosen.tolist(), abs=1e-4)
        assert [list(top) for top in completion.top_logprobs] == expected.topk(2).indices.tolist()


def test_stop_string_ends_a_beam_with_the_text_cut_before_it(model, tokenizer, encode):
    best = beam_search(model, tokenizer, encode("the quick"), BEAMS.replace(stop=["lazy"]))[0]
    assert best.text == " brown fox jumps over the "
    assert best.finish_reason == "stop"


def test_beams_that_run_out_of_tokens_finish_with_length(model, tokenizer, encode):
    completions = beam_search(model, tokenizer, encode("the quick"), BEAMS.replace(max_tokens=3))
    assert all(c.finish_reason == "length" and len(c.token_ids) == 3 for c in completions)
    assert all(c.text == tokenizer.decode(c.token_ids) for c in completions)


def test_beam_search_ignores_the_sampling_settings(model, tokenizer, encode):
    plain = beam_search(model, tokenizer, encode("a red"), BEAMS)
    sampled = beam_search(model, tokenizer, encode("a red"), BEAMS.replace(temperature=1.7, top_k=2, top_p=0.3, seed=9))
    assert [c.token_ids for c in sampled] == [c.token_ids for c in plain]


def test_beam_search_rejects_a_prompt_that_fills_the_context(trained_gpt, tokenizer):
    with pytest.raises(AigcError, match="shorten the prompt"):
        beam_search(trained_gpt, tokenizer, [1] * 64, BEAMS)
