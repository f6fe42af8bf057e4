from __future__ import annotations

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.diversity import distinct_n, self_bleu


def test_distinct_n_matches_hand_counts():
    candidates = ["a b a", "a c"]
    # unigrams a b a a c: 3 unique of 5; bigrams (a b) (b a) (a c): all unique, not across candidates.
    assert distinct_n(candidates, 1) == pytest.approx(3 / 5)
    assert distinct_n(candidates, 2) == pytest.approx(1.0)
    assert distinct_n(["same text", "same text"], 2) == pytest.approx(1 / 2)


def test_distinct_n_counts_chinese_characters():
    assert distinct_n(["好好看"], 1) == pytest.approx(2 / 3)


def test_distinct_n_of_nothing_is_zero_and_n_must_be_positive():
    assert distinct_n(["one"], 2) == 0.0
    with pytest.raises(AigcError, match="at least 1"):
        distinct_n(["a"], 0)


def test_self_bleu_is_100_for_identical_candidates_and_lower_for_varied_ones():
    same = ["the eagle is a cheap coffee shop"] * 3
    varied = ["the eagle is a cheap coffee shop", "a pricey pub by the river", "fast food near burger king"]
    assert self_bleu(same) == pytest.approx(100.0)
    assert self_bleu(varied) < 20.0


def test_self_bleu_needs_two_candidates():
    with pytest.raises(AigcError, match="at least 2 candidates"):
        self_bleu(["only one"])
