"""Normalisation folds evasions and keeps an exact map back to the original characters."""

from __future__ import annotations

import pytest

from aigc_studio.safety.normalize import collapse_spelled_out, fold_width, normalize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＫＩＬＬ", "kill"),  # full-width
        ("k\u200bi\u200dl\u00adl", "kill"),  # zero-width space and joiner, soft hyphen
        ("кіll", "kill"),  # Cyrillic ka and i
        ("κill", "kill"),  # Greek kappa
        ("kíll", "kill"),  # accent
        ("ⓚ𝐢ll", "kill"),  # circled and mathematical letters
        ("殺人", "杀人"),  # traditional Chinese
        ("Hello World", "hello world"),
    ],
)
def test_normalize_folds_evasions(text: str, expected: str) -> None:
    assert normalize(text).text == expected


def test_normalize_offsets_point_at_the_original_characters() -> None:
    text = "a\u200bＫ殺b"
    normalized = normalize(text)
    assert normalized.text == "ak杀b"
    assert [text[i] for i in normalized.origin] == ["a", "Ｋ", "殺", "b"]
    assert normalized.original_span(1, 3) == (2, 4)


def test_normalize_keeps_digits_and_symbols_for_later_leet_handling() -> None:
    # Leetspeak is resolved inside lexicon terms; a price must stay a price.
    assert normalize("$100 k1ll").text == "$100 k1ll"


def test_fold_width_keeps_case_and_letters() -> None:
    folded = fold_width("Ｊｏｈｎ\u200b １３８＠")
    assert folded.text == "John 138@"
    assert folded.original_span(0, 4) == (0, 4)


def test_collapse_spelled_out_joins_single_characters_only() -> None:
    assert collapse_spelled_out(normalize("all t.h.o.s.e men")).text == "all those men"
    assert collapse_spelled_out(normalize("滚 回 你 们 国 家")).text == "滚回你们国家"
    assert collapse_spelled_out(normalize("a b or c d")).text == "a b or c d"  # runs of two stay apart
    collapsed = collapse_spelled_out(normalize("xy t.h.e"))
    assert [collapsed.original[i] for i in collapsed.origin] == list("xy the")
