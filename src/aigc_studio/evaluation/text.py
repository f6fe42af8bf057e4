"""Text normalisation, tokenisation and term matching shared by every metric (one definition, reused).

Metrics that count units (ROUGE-L, distinct-n, copied n-grams, length, keyword matches) all use
:func:`tokenize`: lowercase words for alphabetic scripts and one token per character for Chinese and
Japanese, so mixed text such as ``这款BRAND连衣裙`` is handled without a language switch.
"""

from __future__ import annotations

import re
import unicodedata

# CJK ideographs (with extension A and compatibility forms) and Japanese kana: scripts written without
# spaces, where one character is the natural unit.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
# One CJK character, or a run of other word characters with inner apostrophes kept (don't, kid's).
_TOKEN = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+(?:'[^\\W{_CJK}]+)*")


def normalize(text: str) -> str:
    """Unicode NFKC (full-width → ASCII), curly apostrophes made straight, lowercase, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'").lower()
    return " ".join(text.split())


def has_cjk(text: str) -> bool:
    """Whether ``text`` contains any Chinese/Japanese character."""
    return _CJK_CHAR.search(text) is not None


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens for English, single characters for Chinese; punctuation is dropped.

    Args:
        text: any text, possibly mixing scripts.

    Returns:
        The tokens in order: ``"Don't stop!"`` → ``["don't", "stop"]``; ``"宽松T恤"`` → ``["宽", "松", "t", "恤"]``.
    """
    return _TOKEN.findall(normalize(text))


def term_pattern(term: str) -> re.Pattern[str]:
    """A regex finding ``term`` in :func:`normalize`-d text.

    Terms with Chinese characters match as substrings (Chinese has no word boundaries); other terms match
    whole words only, so ``pub`` is not found in ``public``. Inner whitespace in a term matches any spacing.
    """
    normalized = normalize(term)
    body = r"\s+".join(re.escape(part) for part in normalized.split(" "))
    if has_cjk(normalized):
        return re.compile(body)
    return re.compile(rf"(?<!\w){body}(?!\w)")


def count_term(text: str, term: str) -> int:
    """Number of non-overlapping occurrences of ``term`` in ``text`` (case-insensitive, see :func:`term_pattern`)."""
    return len(term_pattern(term).findall(normalize(text)))
