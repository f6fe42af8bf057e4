from __future__ import annotations

import math

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.fluency import perplexity, perplexity_from_logprobs


def test_perplexity_is_exp_of_negative_mean_logprob():
    assert perplexity_from_logprobs([math.log(0.5)] * 4) == pytest.approx(2.0)
    assert perplexity_from_logprobs([math.log(0.5), math.log(0.125)]) == pytest.approx(4.0)
    assert perplexity_from_logprobs([0.0, 0.0]) == pytest.approx(1.0)


def test_perplexity_calls_the_scorer_with_the_text():
    seen = []

    def scorer(text: str) -> list[float]:
        seen.append(text)
        return [math.log(0.25)] * len(text.split())

    assert perplexity("two words", scorer) == pytest.approx(4.0)
    assert seen == ["two words"]


@pytest.mark.parametrize("logprobs", [[], [0.5], [float("nan")]])
def test_perplexity_rejects_what_is_not_log_probabilities(logprobs):
    with pytest.raises(AigcError, match="log-probabilit"):
        perplexity_from_logprobs(logprobs)
