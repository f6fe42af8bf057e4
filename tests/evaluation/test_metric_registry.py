from __future__ import annotations

import math

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.evaluation import METRICS, EvalContext, Metric, get_metric
from aigc_studio.evaluation.originality import NgramIndex

CANDIDATE = "The Eagle is a cheap coffee shop by the river. It is family friendly."


def full_english_context() -> EvalContext:
    return EvalContext(
        attributes={"name": "The Eagle", "eatType": "coffee shop", "priceRange": "cheap", "familyFriendly": "yes"},
        references=["The Eagle is a cheap, family friendly coffee shop by the river."],
        keywords=["coffee", "river"],
        forbidden_words=["expensive"],
        length_range=(5, 20),
        lm_scorer=lambda text: [math.log(0.5)] * len(text.split()),
        ngram_index=NgramIndex.build(["the eagle is a cheap coffee shop by the river"], n=4),
    )


def test_every_metric_is_named_directed_described_and_registered_once():
    assert len(METRICS) == 13
    for name, metric in METRICS.items():
        assert isinstance(metric, Metric) and metric.name == name
        assert metric.direction in ("higher", "lower")
        assert metric.description and metric.range[0] < metric.range[1]


def test_all_english_metrics_score_inside_their_ranges():
    context = full_english_context()
    scored = {name: metric(CANDIDATE, context) for name, metric in METRICS.items() if metric.applies_to(context)}
    assert set(scored) == set(METRICS) - {"zh_sentence_length", "zh_common_char_share"}
    for name, value in scored.items():
        low, high = METRICS[name].range
        assert low - 1e-9 <= value <= high + 1e-9, name
    assert scored["slot_error_rate"] == 0.0
    assert scored["keyword_coverage"] == 1.0
    assert scored["forbidden_word_hits"] == 0.0
    assert scored["perplexity"] == pytest.approx(2.0)
    assert scored["longest_copied_span"] == 10


def test_chinese_context_selects_chinese_readability():
    context = EvalContext(references=["这款裤子很宽松。"], language="zh")
    applicable = {name for name, metric in METRICS.items() if metric.applies_to(context)}
    assert applicable == {"sentence_bleu", "chrf", "rouge_l", "zh_sentence_length", "zh_common_char_share"}
    assert METRICS["sentence_bleu"]("这款裤子很宽松。", context) == pytest.approx(100.0)


def test_a_metric_without_what_it_needs_says_so():
    with pytest.raises(AigcError, match="'sentence_bleu' needs references") as error:
        METRICS["sentence_bleu"](CANDIDATE, EvalContext())
    assert error.value.param == "metrics"
    with pytest.raises(AigcError, match="defined for zh, not 'en'"):
        METRICS["zh_common_char_share"]("text", EvalContext())


def test_get_metric_lists_the_known_names_for_an_unknown_one():
    assert get_metric("rouge_l") is METRICS["rouge_l"]
    with pytest.raises(AigcError, match="unknown metric 'bleurt'; choose from: sentence_bleu, chrf"):
        get_metric("bleurt")


def test_context_validates_language_and_length_range():
    with pytest.raises(AigcError, match="unknown language 'fr'"):
        EvalContext(language="fr")  # type: ignore[arg-type]
    with pytest.raises(AigcError, match="length range"):
        EvalContext(length_range=(10, 5))
