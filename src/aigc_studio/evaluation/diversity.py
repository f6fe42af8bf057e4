"""Diversity across a set of candidates (corpus-level): distinct-n and self-BLEU.

Both look at the candidates generated for one request (or at a whole system's outputs): a model that
says the same thing every time scores low distinct-n and high self-BLEU.
"""

from __future__ import annotations

from collections.abc import Sequence

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.reference import BleuTokenizer, sentence_bleu
from aigc_studio.evaluation.text import tokenize as tokenize_text


def distinct_n(candidates: Sequence[str], n: int = 1) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams divided by all n-grams, pooled over the candidates.

    Tokens are :func:`~aigc_studio.evaluation.text.tokenize`'s (lowercase words; characters for Chinese);
    n-grams do not cross candidate boundaries.

    Args:
        candidates: the texts to compare.
        n: n-gram order (1 and 2 are the usual reports).

    Returns:
        Distinct-n in [0, 1] (higher is more diverse); 0.0 when there are no n-grams at all.

    Raises:
        AigcError: ``n`` < 1.
    """
    if n < 1:
        raise AigcError(f"n must be at least 1, got {n}", param="n")
    ngrams = [
        tuple(tokens[i : i + n]) for tokens in map(tokenize_text, candidates) for i in range(len(tokens) - n + 1)
    ]
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0


def self_bleu(candidates: Sequence[str], *, tokenize: BleuTokenizer = "13a") -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen): mean BLEU of each candidate against all the others.

    Each candidate is scored with sentence-level BLEU (sacrebleu, exp smoothing) using every other
    candidate as a reference; the scores are averaged.

    Args:
        candidates: at least two texts.
        tokenize: sacrebleu tokenizer, ``"13a"`` for English or ``"zh"`` for Chinese.

    Returns:
        Self-BLEU in [0, 100] (lower is more diverse; identical candidates give 100).

    Raises:
        AigcError: fewer than two candidates, or an unknown tokenizer.
    """
    if len(candidates) < 2:
        raise AigcError(
            f"self-BLEU needs at least 2 candidates, got {len(candidates)}; generate more (n >= 2)", param="candidates"
        )
    scores = [
        sentence_bleu(candidate, [other for j, other in enumerate(candidates) if j != i], tokenize=tokenize)
        for i, candidate in enumerate(candidates)
    ]
    return sum(scores) / len(scores)
