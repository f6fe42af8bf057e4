from __future__ import annotations

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.constraints import forbidden_word_hits, keyword_coverage, length_compliance, text_length


def test_keyword_coverage_counts_present_keywords_case_insensitively():
    assert keyword_coverage("The EAGLE serves French food.", ["eagle", "french", "riverside"]) == pytest.approx(2 / 3)


def test_keyword_coverage_matches_whole_english_words_only():
    assert keyword_coverage("A public house.", ["pub"]) == 0.0
    assert keyword_coverage("A cosy pub.", ["pub"]) == 1.0
    assert keyword_coverage("Close to the  city\ncentre.", ["city centre"]) == 1.0


def test_keyword_coverage_matches_chinese_as_substrings():
    assert keyword_coverage("这条宽松牛仔裤很显瘦", ["牛仔", "显瘦", "修身"]) == pytest.approx(2 / 3)


def test_no_required_keywords_is_full_coverage():
    assert keyword_coverage("anything", []) == 1.0


def test_forbidden_word_hits_counts_every_occurrence():
    assert forbidden_word_hits("Cheap, cheap and CHEAP! Best ever.", ["cheap", "best", "worst"]) == 4
    assert forbidden_word_hits("最好的，最好的选择", ["最好"]) == 2
    assert forbidden_word_hits("cheapest", ["cheap"]) == 0


def test_terms_must_be_a_list_of_non_empty_strings():
    with pytest.raises(AigcError, match="list of terms") as error:
        keyword_coverage("text", "cheap")
    assert error.value.param == "keywords"
    with pytest.raises(AigcError, match="empty term"):
        forbidden_word_hits("text", ["ok", " "])


def test_text_length_is_words_for_english_and_characters_for_chinese():
    assert text_length("Don't stop, it's fine!") == 4
    assert text_length("宽松的裤子。") == 5


@pytest.mark.parametrize(
    ("words", "expected"),
    [(5, 1.0), (10, 1.0), (7, 1.0), (2, 0.4), (0, 0.0), (15, 0.5), (20, 0.0), (40, 0.0)],
)
def test_length_compliance_is_one_inside_and_graded_outside(words: int, expected: float):
    assert length_compliance(" ".join(["word"] * words), 5, 10) == pytest.approx(expected)


@pytest.mark.parametrize(("low", "high"), [(-1, 5), (6, 5), (0, 0)])
def test_invalid_length_ranges_are_rejected(low: int, high: int):
    with pytest.raises(AigcError, match="length range") as error:
        length_compliance("text", low, high)
    assert error.value.param == "length_range"
