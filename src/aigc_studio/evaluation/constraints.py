"""Request constraints: required keywords, forbidden words and a target length.

Terms match case-insensitively; terms with Chinese characters match as substrings and others as whole
words (``pub`` is not found in ``public``), see :func:`~aigc_studio.evaluation.text.term_pattern`.
Length is counted in :func:`~aigc_studio.evaluation.text.tokenize` tokens: words for English, characters
for Chinese.
"""

from __future__ import annotations

from collections.abc import Sequence

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.text import count_term, tokenize


def _check_terms(terms: Sequence[str], param: str) -> None:
    if isinstance(terms, str):
        raise AigcError(f"{param} must be a list of terms, not one string; write [{terms!r}]", param=param)
    for term in terms:
        if not term.strip():
            raise AigcError(f"{param} contains an empty term; remove it", param=param)


def keyword_coverage(text: str, keywords: Sequence[str]) -> float:
    """Share of the required keywords that appear in ``text``.

    Args:
        text: the candidate.
        keywords: the terms the request asks for.

    Returns:
        Coverage in [0, 1]; 1.0 when no keyword is required.

    Raises:
        AigcError: ``keywords`` is a bare string or holds an empty term.
    """
    _check_terms(keywords, "keywords")
    if not keywords:
        return 1.0
    return sum(count_term(text, keyword) > 0 for keyword in keywords) / len(keywords)


def forbidden_word_hits(text: str, forbidden_words: Sequence[str]) -> int:
    """Number of occurrences of forbidden words in ``text`` (every occurrence counts).

    Raises:
        AigcError: ``forbidden_words`` is a bare string or holds an empty term.
    """
    _check_terms(forbidden_words, "forbidden_words")
    return sum(count_term(text, word) for word in forbidden_words)


def text_length(text: str) -> int:
    """Length in tokens: words for English, characters for Chinese (punctuation not counted)."""
    return len(tokenize(text))


def check_length_range(min_length: int, max_length: int) -> None:
    """Raise :class:`AigcError` (``param="length_range"``) unless ``0 <= min_length <= max_length`` and ``max_length > 0``."""
    if min_length < 0 or max_length <= 0 or min_length > max_length:
        raise AigcError(
            f"length range ({min_length}, {max_length}) is invalid; use 0 <= min <= max with max > 0",
            param="length_range",
        )


def length_compliance(text: str, min_length: int, max_length: int) -> float:
    """How well the length of ``text`` fits ``[min_length, max_length]``, with a graded penalty outside.

    Inside the range the score is 1. Below it, ``length / min_length`` (half the minimum scores 0.5);
    above it, ``1 - (length - max_length) / max_length`` clipped at 0 (twice the maximum scores 0).

    Args:
        text: the candidate.
        min_length: fewest tokens allowed (words, or characters for Chinese).
        max_length: most tokens allowed.

    Returns:
        Compliance in [0, 1].

    Raises:
        AigcError: the range is invalid.
    """
    check_length_range(min_length, max_length)
    length = text_length(text)
    if length < min_length:
        return length / min_length
    if length > max_length:
        return max(0.0, 1.0 - (length - max_length) / max_length)
    return 1.0
