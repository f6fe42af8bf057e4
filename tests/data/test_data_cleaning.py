"""Normalisation, de-duplication and length filters, with the count of every step."""

from __future__ import annotations

import pytest

from aigc_studio.data.cleaning import KEPT_FULL_WIDTH_PUNCTUATION, CleaningConfig, RecordCleaner, dedup_key, normalize_text
from aigc_studio.errors import AigcError


def test_normalize_folds_full_width_and_compatibility_characters() -> None:
    assert normalize_text("Ｃａｆé ﬁne ①") == "Café fine 1"


def test_normalize_removes_control_and_zero_width_but_keeps_newline_and_tab() -> None:
    assert normalize_text("a\u200bb\u200dc\ufeff\x00d\x07\te\r\nf\rg\x85") == "abcd\te\nf\ng"


def test_normalize_keeps_full_width_punctuation_but_folds_letters_and_digits() -> None:
    assert normalize_text("ＸＬ码，１００％棉！简约……时尚（百搭）；好看？：“显瘦”、舒适。") == "XL码，100％棉！简约……时尚（百搭）；好看？：“显瘦”、舒适。"


def test_normalize_keeps_every_full_width_ascii_punctuation_mark() -> None:
    assert normalize_text(KEPT_FULL_WIDTH_PUNCTUATION) == KEPT_FULL_WIDTH_PUNCTUATION
    assert "，" in KEPT_FULL_WIDTH_PUNCTUATION and not any(character.isalnum() for character in KEPT_FULL_WIDTH_PUNCTUATION)


def test_normalize_removes_zero_width_characters_between_full_width_punctuation() -> None:
    assert normalize_text("好，\u200b！\x07") == "好，！"


def test_normalize_strips_surrounding_whitespace() -> None:
    assert normalize_text("  \n hello world \t\n") == "hello world"


def test_dedup_key_ignores_case_punctuation_and_spacing() -> None:
    assert dedup_key("The Eagle is  CHEAP!") == dedup_key("the eagle, is cheap") == "the eagle is cheap"
    assert dedup_key("简约，时尚。") == dedup_key("简约时尚")


def test_dedup_key_treats_full_width_and_ascii_forms_alike() -> None:
    assert dedup_key(normalize_text("１００％ 棉＋麻，")) == dedup_key("100% 棉+麻,") == "100 棉+麻"


def test_dedup_key_keeps_different_words_apart() -> None:
    assert dedup_key("cheap food") != dedup_key("cheap foods")


def test_cleaner_counts_each_step_in_order() -> None:
    cleaner = RecordCleaner(CleaningConfig(min_chars=3, max_chars=12))
    records = [
        ("s1", "hello"),        # kept
        ("s1", "hello"),        # exact duplicate
        ("S1!", "Hello."),      # normalised duplicate
        ("s2", ""),             # empty target
        ("\u200b", "hello"),    # source empty once zero-width characters go
        ("s3", "hi"),           # too short
        ("s4", "a" * 13),       # too long
        ("s1", "hello there"),  # kept: same source, other target
    ]
    kept = [cleaned for record in records if (cleaned := cleaner.clean(record)) is not None]
    assert kept == [("s1", "hello"), ("s1", "hello there")]
    assert {step["step"]: step["removed"] for step in cleaner.report()} == {
        "empty": 2, "exact_duplicates": 1, "normalized_duplicates": 1, "min_chars": 1, "max_chars": 1,
    }
    report = cleaner.report()
    assert report[0]["before"] == 8 and report[-1]["after"] == 2 == cleaner.records_kept
    assert all(a["after"] == b["before"] for a, b in zip(report, report[1:]))


def test_no_dedup_keeps_duplicates() -> None:
    cleaner = RecordCleaner(CleaningConfig(deduplicate=False))
    assert [cleaner.clean(("a",)), cleaner.clean(("a",))] == [("a",), ("a",)]


def test_empty_result_names_the_filter_that_removed_the_rest() -> None:
    cleaner = RecordCleaner(CleaningConfig(min_chars=50))
    cleaner.clean(("", "x"))
    cleaner.clean(("s", "short target"))
    with pytest.raises(AigcError, match=r"min_chars filter removed the last 1 of 2; lower --min-chars \(now 50\)"):
        cleaner.raise_if_empty()


def test_nothing_read_is_reported() -> None:
    with pytest.raises(AigcError, match="no records found"):
        RecordCleaner().raise_if_empty()


def test_max_chars_below_min_chars_is_rejected() -> None:
    with pytest.raises(AigcError, match="--max-chars") as error:
        RecordCleaner(CleaningConfig(min_chars=5, max_chars=2))
    assert error.value.param == "max_chars"
