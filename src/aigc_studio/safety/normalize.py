"""Text normalisation that defeats simple evasion, with a map back to the original characters.

Moderation lexicons and personal-data patterns match a *normalised* copy of the text, but every match is
reported with offsets into the *original* text. :class:`NormalizedText` therefore keeps, for each character
of the normalised string, the index of the original character it came from. Every step below works one
original character at a time (a character may become zero, one or several characters), which is what
makes that map exact.

Steps of :func:`normalize` (moderation), in order:

1. zero-width and other invisible format characters (``\\u200b``, soft hyphen, BOM, bidi controls) are dropped;
2. compatibility decomposition (NFKD): full-width ``Ｋ１`` becomes ``K1``, ``ⓚ`` and ``𝐤`` become ``k``,
   ligatures split; accents (combining marks) are then dropped so ``kíll`` reads ``kill``;
3. lower case;
4. Cyrillic and Greek look-alikes map to the Latin letter they imitate (``кіll`` reads ``kill``);
5. traditional Chinese characters become simplified ones (``殺`` reads ``杀``) with zhconv.

Two evasions are *not* undone by :func:`normalize` because undoing them needs context a character map does
not have: letters spaced out by separators (``k i l l``, ``k.i.l.l``) and leetspeak (``k1ll``, ``$c@m``).
A digit is only a letter inside a word (``100`` must stay a number), so moderation resolves both when it
compiles a lexicon term, using :data:`LEET_EQUIVALENTS` and :data:`SEPARATOR_CLASS`; for free-form regular
expressions, :func:`collapse_spelled_out` offers a second view with spelt-out runs joined.

:func:`fold_width` is the light version used for personal data: steps 1 and 2 without dropping accents, so
full-width digits and ``＠`` are recognised but names keep their letters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import zhconv

# Lower-case Cyrillic and Greek letters that render like a Latin letter in common fonts.
HOMOGLYPHS: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ӏ": "l", "ь": "b",
    "ԛ": "q", "ԝ": "w", "һ": "h", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "γ": "y", "ω": "w", "ς": "s",
}  # fmt: skip

# Characters that stand for a letter in leetspeak. Applied only inside lexicon terms (see module docstring).
LEET_EQUIVALENTS: dict[str, str] = {
    "a": "4@", "b": "8", "e": "3", "g": "9", "i": "1!|", "l": "1|", "o": "0", "s": "5$", "t": "7+", "z": "2",
}  # fmt: skip

# What may be put between the letters of a word to split it: anything that is not a letter, digit or CJK
# character (spaces, dots, dashes, underscores, asterisks, CJK punctuation).
SEPARATOR_CLASS = r"[\W_]"


def is_cjk(char: str) -> bool:
    """Whether ``char`` is a CJK unified ideograph (basic block or extension A)."""
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


@dataclass(frozen=True)
class NormalizedText:
    """A normalised string and, for each of its characters, the index of the original character.

    Attributes:
        original: the text as given.
        text: the normalised text that patterns run on.
        origin: ``origin[i]`` is the index in ``original`` of the character that produced ``text[i]``.
    """

    original: str
    text: str
    origin: Sequence[int]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The ``(start, end)`` span of ``original`` that produced ``text[start:end]`` (``end > start``)."""
        return self.origin[start], self.origin[end - 1] + 1


def _is_invisible(char: str) -> bool:
    # Cf covers zero-width space/joiners, word joiner, soft hyphen, BOM and the bidi overrides.
    return unicodedata.category(char) == "Cf"


@lru_cache(maxsize=1 << 16)
def _fold_for_moderation(char: str) -> str:
    if _is_invisible(char):
        return ""
    decomposed = unicodedata.normalize("NFKD", char)
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    folded = "".join(HOMOGLYPHS.get(c, c) for c in folded)
    if any(is_cjk(c) for c in folded):
        folded = zhconv.convert(folded, "zh-cn")
    return folded


@lru_cache(maxsize=1 << 16)
def _fold_width(char: str) -> str:
    if _is_invisible(char):
        return ""
    return unicodedata.normalize("NFKC", char)


def _map_characters(text: str, fold: Callable[[str], str]) -> NormalizedText:
    pieces: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded = fold(char)
        pieces.append(folded)
        origin.extend([index] * len(folded))
    return NormalizedText(original=text, text="".join(pieces), origin=origin)


def normalize(text: str) -> NormalizedText:
    """Normalise ``text`` for moderation matching (all five steps of the module docstring).

    Args:
        text: any text.

    Returns:
        The normalised text with its map back to ``text``.
    """
    if text.isascii():  # fast path: ASCII has no invisible, wide, accented, Cyrillic or Chinese characters
        return NormalizedText(original=text, text=text.lower(), origin=range(len(text)))
    return _map_characters(text, _fold_for_moderation)


# Three or more single letters or CJK characters, each separated by one to three separators.
_SPELLED_OUT = re.compile(r"(?<![^\W_])[^\W_](?:[\W_]{1,3}[^\W_](?![^\W_])){2,}")


def collapse_spelled_out(normalized: NormalizedText) -> NormalizedText:
    """Join characters that were spelt out one by one: ``t.h.o.s.e`` reads ``those``, ``滚 回 去`` reads ``滚回去``.

    Lexicon terms already allow such separators (see :mod:`aigc_studio.safety.moderation`); this view lets
    free-form regular expressions see through them too. The offsets map still points at the original text.

    Args:
        normalized: the output of :func:`normalize`.

    Returns:
        The same text with the separators inside spelt-out runs removed (``normalized`` itself when there
        are none).
    """
    runs = list(_SPELLED_OUT.finditer(normalized.text))
    if not runs:
        return normalized
    dropped = {index for run in runs for index in range(run.start(), run.end()) if not normalized.text[index].isalnum()}
    kept = [index for index in range(len(normalized.text)) if index not in dropped]
    return NormalizedText(
        original=normalized.original,
        text="".join(normalized.text[index] for index in kept),
        origin=[normalized.origin[index] for index in kept],
    )


def fold_width(text: str) -> NormalizedText:
    """Drop invisible characters and fold full-width and compatibility forms (NFKC), keeping case.

    Args:
        text: any text.

    Returns:
        The folded text with its map back to ``text``.
    """
    if text.isascii():
        return NormalizedText(original=text, text=text, origin=range(len(text)))
    return _map_characters(text, _fold_width)
