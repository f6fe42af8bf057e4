"""Readability: Flesch reading ease for English; sentence length and common-character share for Chinese.

English uses Flesch (1948) with a syllable-counting heuristic (vowel groups, silent final *e*). Chinese
has no syllable/word analogue that Flesch's weights would fit, so two simple, documented measures are
reported instead: the average sentence length in characters (long sentences read harder) and the share of
characters that are among the 2,500 most common (rare characters read harder). The common set is derived
from the word-frequency dictionary bundled with jieba: each character's frequency is the sum of the
frequencies of the words containing it, and the top 2,500 are taken, the size of the official list of
常用字 (the 1988 现代汉语常用字表 has 2,500 common characters).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import jieba

from aigc_studio.evaluation.text import has_cjk, normalize, tokenize

COMMON_CHARACTER_COUNT = 2500
_ENGLISH_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_ENGLISH_SENTENCE_END = re.compile(r"[.!?]+")
_CHINESE_SENTENCE_END = re.compile(r"[。！？!?；;…\n]+")
_CJK_IDEOGRAPH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def count_syllables(word: str) -> int:
    """Heuristic English syllable count: groups of vowels (a e i o u y), minus a silent final ``e``.

    A final ``e`` is silent unless the word ends in consonant + ``le``/``re`` (ta-ble, cen-tre) or ``ee``.
    Every word has at least one syllable. Right for most common words; irregular ones can be off by one.
    """
    word = word.lower().strip("'")
    count = len(re.findall(r"[aeiouy]+", word))
    silent_final_e = (
        word.endswith("e")
        and not word.endswith("ee")
        and not re.search(r"[^aeiouy][lr]e$", word)
        and count > 1
    )
    return max(1, count - silent_final_e)


def flesch_reading_ease(text: str) -> float:
    """Flesch reading ease: ``206.835 - 1.015 * words/sentences - 84.6 * syllables/words``.

    Words are runs of letters (numbers are skipped); sentences end at ``.``, ``!`` or ``?`` (text without
    one is one sentence). 90-100 reads very easily, 60-70 is plain English, below 30 is very difficult.

    Returns:
        The score (higher is easier; at most about 121, unbounded below); 0.0 for text without words.
    """
    normalized = normalize(text)
    words = _ENGLISH_WORD.findall(normalized)
    if not words:
        return 0.0
    sentences = sum(1 for part in _ENGLISH_SENTENCE_END.split(normalized) if _ENGLISH_WORD.search(part))
    syllables = sum(count_syllables(word) for word in words)
    return 206.835 - 1.015 * len(words) / max(1, sentences) - 84.6 * syllables / len(words)


def chinese_average_sentence_length(text: str) -> float:
    """Average Chinese sentence length in characters (a Latin word counts as one; punctuation as none).

    Sentences end at 。！？；… (full- or half-width) or a line break.

    Returns:
        Characters per sentence (lower reads more easily); 0.0 for text without characters.
    """
    lengths = [len(tokenize(sentence)) for sentence in _CHINESE_SENTENCE_END.split(text)]
    lengths = [length for length in lengths if length]
    return sum(lengths) / len(lengths) if lengths else 0.0


@lru_cache(maxsize=1)
def common_chinese_characters() -> frozenset[str]:
    """The 2,500 most frequent Chinese characters by jieba's bundled dictionary (see the module docstring)."""
    counts: Counter[str] = Counter()
    dictionary = Path(jieba.__file__).with_name("dict.txt")
    with open(dictionary, encoding="utf-8") as handle:
        for line in handle:
            word, frequency = line.split(" ")[:2]
            for char in _CJK_IDEOGRAPH.findall(word):
                counts[char] += int(frequency)
    return frozenset(char for char, _ in counts.most_common(COMMON_CHARACTER_COUNT))


def chinese_common_char_share(text: str) -> float:
    """Share of the Chinese characters of ``text`` that are among the 2,500 most common.

    Returns:
        Share in [0, 1] (higher reads more easily); 0.0 for text without Chinese characters.
    """
    chars = _CJK_IDEOGRAPH.findall(normalize(text)) if has_cjk(text) else []
    if not chars:
        return 0.0
    common = common_chinese_characters()
    return sum(char in common for char in chars) / len(chars)
