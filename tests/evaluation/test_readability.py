from __future__ import annotations

import pytest

from aigc_studio.evaluation.readability import (
    COMMON_CHARACTER_COUNT,
    chinese_average_sentence_length,
    chinese_common_char_share,
    common_chinese_characters,
    count_syllables,
    flesch_reading_ease,
)


@pytest.mark.parametrize(
    ("word", "syllables"),
    [("cat", 1), ("the", 1), ("place", 1), ("table", 2), ("centre", 2), ("coffee", 2), ("family", 3),
     ("restaurant", 3), ("located", 3), ("friendly", 2), ("more", 1)],
)
def test_count_syllables_heuristic(word: str, syllables: int):
    assert count_syllables(word) == syllables


def test_flesch_reading_ease_matches_hand_computation():
    # 6 words, 1 sentence, 6 syllables: 206.835 - 1.015 * 6 - 84.6 * 1.
    assert flesch_reading_ease("The cat sat on the mat.") == pytest.approx(116.145)
    # 2 sentences of 3 words; syllables it-is-fam-i-ly = 1+1+3 and we-love-cof-fee = 1+1+2: 9 over 6 words.
    expected = 206.835 - 1.015 * 3 - 84.6 * 9 / 6
    assert flesch_reading_ease("It is family. We love coffee!") == pytest.approx(expected)


def test_flesch_prefers_short_words_and_sentences():
    easy = "The pub is cheap. It is by the river."
    hard = "The establishment, conveniently situated alongside the riverside, offers exceptionally economical refreshments."
    assert flesch_reading_ease(easy) > 80 > 0 > flesch_reading_ease(hard)
    assert flesch_reading_ease("") == 0.0


def test_chinese_average_sentence_length_counts_characters_per_sentence():
    assert chinese_average_sentence_length("简约百搭。宽松舒适的裤子！") == pytest.approx((4 + 7) / 2)
    assert chinese_average_sentence_length("") == 0.0


def test_common_characters_are_2500_and_include_everyday_ones():
    common = common_chinese_characters()
    assert len(common) == COMMON_CHARACTER_COUNT
    assert {"的", "是", "衣", "裤", "大"} <= common
    assert "魍" not in common


def test_common_char_share_separates_plain_from_obscure_text():
    assert chinese_common_char_share("这是一件很好看的衣服") == pytest.approx(1.0)
    assert chinese_common_char_share("魑魅魍魉的衣服") == pytest.approx(3 / 7)
    assert chinese_common_char_share("no chinese here") == 0.0
