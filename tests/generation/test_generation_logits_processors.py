from __future__ import annotations

import math

import pytest
import torch

from aigc_studio.generation import (
    MinP,
    MinTokens,
    NoRepeatNGram,
    PresenceFrequencyPenalty,
    RepetitionPenalty,
    SamplingParams,
    Temperature,
    TopK,
    TopP,
    apply_logits_processors,
    build_logits_processors,
    sample_with_uniforms,
)

NEG_INF = float("-inf")


def probs_to_logits(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows).log()


def kept(logits: torch.Tensor) -> list[list[int]]:
    """Indices of the tokens that can still be drawn, per row."""
    return [torch.nonzero(torch.isfinite(row)).flatten().tolist() for row in logits]


NO_TOKENS = torch.zeros(2, 0, dtype=torch.long)


def test_top_k_one_is_greedy():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    out = TopK(1)(logits, NO_TOKENS)
    assert kept(out) == [[index] for index in logits.argmax(-1).tolist()]


def test_top_k_keeps_the_k_highest_unchanged():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5]])
    out = TopK(2)(logits, NO_TOKENS)
    assert kept(out) == [[1, 3]]
    assert out[0, 1] == 3.0 and out[0, 3] == 2.0


def test_top_k_larger_than_vocabulary_keeps_everything():
    logits = torch.randn(2, 5)
    assert torch.equal(TopK(10)(logits, NO_TOKENS), logits)


def test_top_p_one_keeps_all_tokens():
    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(1))
    assert torch.equal(TopP(1.0)(logits, NO_TOKENS), logits)


@pytest.mark.parametrize(("p", "expected"), [(0.45, [0]), (0.7, [0, 1]), (0.79, [0, 1]), (0.81, [0, 1, 2]), (1e-6, [0])])
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    logits = probs_to_logits([0.5, 0.3, 0.15, 0.05])
    assert kept(TopP(p)(logits, NO_TOKENS)) == [expected]


def test_min_p_drops_tokens_below_a_fraction_of_the_best():
    logits = probs_to_logits([0.5, 0.3, 0.15, 0.05])
    assert kept(MinP(0.25)(logits, NO_TOKENS)) == [[0, 1, 2]]  # 0.05 < 0.25 * 0.5
    assert kept(MinP(0.7)(logits, NO_TOKENS)) == [[0]]


def test_temperature_divides_the_logits():
    logits = torch.tensor([[2.0, -4.0]])
    assert torch.equal(Temperature(0.5)(logits, NO_TOKENS), torch.tensor([[4.0, -8.0]]))


def test_repetition_penalty_lowers_seen_tokens():
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0]])
    token_ids = torch.tensor([[0, 1, 1]])
    out = RepetitionPenalty(2.0)(logits, token_ids)
    assert out.tolist() == [[1.0, -4.0, 1.0, -1.0]]  # positive divided, negative multiplied, unseen untouched


def test_repetition_penalty_below_one_raises_seen_tokens():
    out = RepetitionPenalty(0.5)(torch.tensor([[2.0, -2.0]]), torch.tensor([[0, 1]]))
    assert out.tolist() == [[4.0, -1.0]]


def test_repetition_penalty_does_not_count_left_padding():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    out = RepetitionPenalty(2.0, pad_id=0)(logits, torch.tensor([[0, 0, 2]]))
    assert out.tolist() == [[1.0, 2.0, 1.5]]


def test_presence_and_frequency_penalties_follow_the_openai_formula_on_the_completion_only():
    logits = torch.zeros(1, 5)
    token_ids = torch.tensor([[4, 4, 1, 1, 1, 2]])  # prompt [4, 4], completion [1, 1, 1, 2]
    out = PresenceFrequencyPenalty(presence=0.5, frequency=0.25, prompt_length=2)(logits, token_ids)
    assert out.tolist() == [[0.0, -(0.5 + 3 * 0.25), -(0.5 + 0.25), 0.0, 0.0]]


def test_presence_penalty_before_any_completion_token_changes_nothing():
    logits = torch.randn(1, 5)
    assert torch.equal(PresenceFrequencyPenalty(1.0, 1.0, prompt_length=3)(logits, torch.tensor([[1, 2, 3]])), logits)


def test_no_repeat_ngram_blocks_repeat():
    logits = torch.zeros(1, 10)
    token_ids = torch.tensor([[5, 6, 7, 5, 6]])  # "5 6" was followed by 7: another 7 would repeat "5 6 7"
    assert kept(NoRepeatNGram(3)(logits, token_ids)) == [[i for i in range(10) if i != 7]]
    assert kept(NoRepeatNGram(2)(logits, token_ids)) == [[i for i in range(10) if i != 7]]  # "6 7"
    assert kept(NoRepeatNGram(1)(logits, token_ids)) == [[0, 1, 2, 3, 4, 8, 9]]  # every seen token


def test_no_repeat_ngram_allows_tokens_that_complete_no_earlier_ngram():
    token_ids = torch.tensor([[5, 6, 7, 6]])
    assert torch.isfinite(NoRepeatNGram(3)(torch.zeros(1, 10), token_ids)).all()


def test_no_repeat_ngram_ignores_ngrams_in_the_left_padding():
    # Unpadded, "0 0" never occurred, so 3 is allowed; padding must not make it look like it did.
    token_ids = torch.tensor([[0, 0, 3, 0, 0]])
    assert kept(NoRepeatNGram(3, pad_id=0)(torch.zeros(1, 5), token_ids)) == [[0, 1, 2, 3, 4]]
    assert kept(NoRepeatNGram(3)(torch.zeros(1, 5), token_ids)) == [[0, 1, 2, 4]]


def test_min_tokens_suppresses_eos():
    logits = torch.zeros(1, 6)
    processor = MinTokens(min_tokens=2, eos_token_ids=(2, 5), prompt_length=3)
    assert kept(processor(logits, torch.tensor([[1, 7, 7, 4]]))) == [[0, 1, 3, 4]]  # one new token so far
    assert kept(processor(logits, torch.tensor([[1, 7, 7, 4, 4]]))) == [[0, 1, 2, 3, 4, 5]]  # two: allowed


def test_processors_do_not_change_their_inputs():
    logits, token_ids = torch.randn(2, 8), torch.tensor([[1, 2, 3], [3, 3, 0]])
    before = logits.clone()
    for processor in (RepetitionPenalty(1.3, 0), PresenceFrequencyPenalty(1.0, 1.0, 1), NoRepeatNGram(2, 0),
                      MinTokens(5, (2,), 1), Temperature(0.7), TopK(3), TopP(0.5), MinP(0.2)):
        processor(logits, token_ids)
        assert torch.equal(logits, before), type(processor).__name__


def test_build_puts_the_processors_in_the_documented_order():
    def watermark(logits, token_ids):
        return logits

    params = SamplingParams(repetition_penalty=1.2, presence_penalty=0.1, frequency_penalty=0.1, no_repeat_ngram_size=3,
                            min_tokens=2, temperature=0.7, top_k=20, top_p=0.9, min_p=0.05)
    processors = build_logits_processors(params, prompt_length=4, eos_token_ids=[2], pad_id=0, extra=[watermark])
    names = [getattr(p, "__name__", type(p).__name__) for p in processors]
    assert names == ["RepetitionPenalty", "PresenceFrequencyPenalty", "NoRepeatNGram", "MinTokens", "watermark",
                     "Temperature", "TopK", "TopP", "MinP"]


def test_build_leaves_out_disabled_processors():
    assert build_logits_processors(SamplingParams(), prompt_length=1, eos_token_ids=[2]) == []


def test_greedy_and_beam_search_leave_out_the_sampling_warpers():
    params = SamplingParams(temperature=0.7, top_k=5, top_p=0.5, min_p=0.1, repetition_penalty=1.1)
    beam = build_logits_processors(params, prompt_length=1, eos_token_ids=[2], warpers=False)
    greedy = build_logits_processors(params.replace(temperature=0), prompt_length=1, eos_token_ids=[2])
    assert [type(p) for p in beam] == [type(p) for p in greedy] == [RepetitionPenalty]


def test_apply_runs_processors_one_after_the_other():
    logits = torch.tensor([[4.0, 2.0, 1.0]])
    out = apply_logits_processors([Temperature(2.0), TopK(2)], logits, NO_TOKENS)
    assert out.tolist() == [[2.0, 1.0, NEG_INF]]


def test_inverse_cdf_sampling_draws_each_token_in_proportion_to_its_probability():
    probs = [0.1, 0.0, 0.6, 0.3]
    count = 1000
    uniforms = (torch.arange(count) + 0.5) / count  # an even grid over [0, 1)
    logits = probs_to_logits(probs).expand(count, -1)
    drawn = sample_with_uniforms(logits, uniforms)
    frequencies = torch.bincount(drawn, minlength=4).tolist()
    assert frequencies == [round(p * count) for p in probs]


def test_inverse_cdf_sampling_never_draws_a_masked_token_even_at_the_ends_of_the_interval():
    logits = torch.tensor([[NEG_INF, 0.0, NEG_INF, 1.0, NEG_INF]] * 2)
    drawn = sample_with_uniforms(logits, torch.tensor([0.0, math.nextafter(1.0, 0.0)]))
    assert drawn.tolist() == [1, 3]
