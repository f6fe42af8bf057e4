from __future__ import annotations

import json
from pathlib import Path

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.chinese import chinese_bleu4, chinese_rouge


@pytest.fixture(scope="module")
def advertisegen_summaries(shared_data: Path) -> list[str]:
    lines = (shared_data / "advertisegen" / "dev.json").read_text(encoding="utf-8").splitlines()[:2]
    return [json.loads(line)["summary"] for line in lines]


def test_a_reference_against_itself_scores_100(advertisegen_summaries: list[str]):
    assert chinese_bleu4(advertisegen_summaries, advertisegen_summaries) == pytest.approx(100.0)
    assert chinese_rouge(advertisegen_summaries, advertisegen_summaries) == {"rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0}


def test_different_copy_scores_low_but_not_zero(advertisegen_summaries: list[str]):
    first, second = advertisegen_summaries
    bleu = chinese_bleu4([first], [second])
    rouge = chinese_rouge([first], [second])
    assert 0.0 < bleu < 20.0
    assert 0.0 < rouge["rouge-1"] < 50.0


def test_bleu4_is_the_mean_of_rounded_character_sentence_bleus():
    predictions, references = ["这款裤子很宽松", "简约大方"], ["这款裤子非常宽松", "简约又大方"]
    expected = [
        round(sentence_bleu([list(ref)], list(pred), smoothing_function=SmoothingFunction().method3) * 100, 4)
        for pred, ref in zip(predictions, references)
    ]
    assert chinese_bleu4(predictions, references) == pytest.approx(sum(expected) / 2)


def test_rouge_on_jieba_words_matches_hand_count():
    # jieba: 简约 / 大方 vs 简约 / 又 / 大方: ROUGE-1 P = 1, R = 2/3, F = 0.8; ROUGE-2: no shared bigram.
    scores = chinese_rouge(["简约大方"], ["简约又大方"])
    assert scores["rouge-1"] == pytest.approx(80.0, abs=1e-3)
    assert scores["rouge-2"] == pytest.approx(0.0, abs=1e-3)


def test_empty_prediction_scores_zero_instead_of_crashing():
    assert chinese_rouge([""], ["简约大方"]) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    assert chinese_bleu4([""], ["简约大方"]) == 0.0


def test_mismatched_lists_are_rejected():
    with pytest.raises(AigcError, match="2 predictions but 1 references"):
        chinese_bleu4(["a", "b"], ["a"])
    with pytest.raises(AigcError, match="lists of texts"):
        chinese_rouge("简约", "简约")  # type: ignore[arg-type]
