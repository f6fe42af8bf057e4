"""Fluency: perplexity of a text under a language model.

Evaluation never imports or loads models: the caller passes a scorer, any callable ``(text) -> token
log-probabilities`` (natural log), e.g. a backend's ``score``. The same text scores differently under
different tokenizers, so compare perplexities only under one scorer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from aigc_studio.errors import AigcError

LogprobScorer = Callable[[str], Sequence[float]]


def perplexity_from_logprobs(logprobs: Sequence[float]) -> float:
    """``exp(-mean(logprobs))``: the model's average branching factor on the text.

    Args:
        logprobs: natural-log probabilities of each token of the text (each <= 0).

    Returns:
        Perplexity in [1, inf); lower is more fluent (to that model).

    Raises:
        AigcError: no log-probabilities, or a value that is not a log-probability (positive or NaN).
    """
    if len(logprobs) == 0:
        raise AigcError("no token log-probabilities to compute perplexity from; the text may be empty", param="logprobs")
    for logprob in logprobs:
        # Small positive values come from float rounding of log(1.0); anything larger is not a log-probability.
        if math.isnan(logprob) or logprob > 1e-6:
            raise AigcError(
                f"{logprob} is not a log-probability (must be <= 0); the scorer must return natural-log probabilities",
                param="logprobs",
            )
    return math.exp(-sum(logprobs) / len(logprobs))


def perplexity(text: str, scorer: LogprobScorer) -> float:
    """Perplexity of ``text`` under the model behind ``scorer``.

    Args:
        text: the candidate.
        scorer: returns the natural-log probability of each token of ``text``.

    Returns:
        Perplexity in [1, inf); lower is better.

    Raises:
        AigcError: the scorer returned nothing or something that is not log-probabilities.
    """
    return perplexity_from_logprobs(list(scorer(text)))
