from __future__ import annotations

import math

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.judge import goodness, rank_candidates, score_candidate
from aigc_studio.evaluation.metrics import EvalContext

CONTEXT = EvalContext(attributes={"name": "The Eagle", "eatType": "pub"}, keywords=["river"], forbidden_words=["cheap"])
WEIGHTS = {"slot_error_rate": 3.0, "keyword_coverage": 2.0, "forbidden_word_hits": 3.0}


def test_goodness_scales_bounded_metrics_and_flips_lower_is_better():
    assert goodness("keyword_coverage", 0.5) == pytest.approx(0.5)
    assert goodness("slot_error_rate", 0.1) == pytest.approx(0.9)
    assert goodness("sentence_bleu", 25.0) == pytest.approx(0.25)


def test_unbounded_metrics_score_half_at_their_documented_points():
    assert goodness("forbidden_word_hits", 0) == 1.0 and goodness("forbidden_word_hits", 1) == pytest.approx(0.5)
    assert goodness("perplexity", 1.0) == 1.0 and goodness("perplexity", 10.0) == pytest.approx(0.5)
    assert goodness("longest_copied_span", 8) == pytest.approx(0.5)
    assert goodness("flesch_reading_ease", 130.0) == 1.0 and goodness("flesch_reading_ease", -20.0) == 0.0


def test_total_is_the_weighted_mean_goodness_of_the_metrics():
    ranked = rank_candidates(["The Eagle is a pub."], CONTEXT, WEIGHTS)
    best = ranked[0]
    assert best.scores == {"slot_error_rate": 0.0, "keyword_coverage": 0.0, "forbidden_word_hits": 0.0}
    assert best.total == pytest.approx((3 * 1.0 + 2 * 0.0 + 3 * 1.0) / 8)


def test_metrics_that_do_not_apply_drop_out_of_the_weights():
    ranked = rank_candidates(["The Eagle is a pub."], EvalContext(attributes={"name": "The Eagle"}), WEIGHTS)
    assert list(ranked[0].scores) == ["slot_error_rate"] and ranked[0].total == 1.0
    assert score_candidate("x", EvalContext(), ["slot_error_rate", "keyword_coverage"]) == {}


def test_violators_rank_after_acceptable_candidates_whatever_their_totals():
    texts = ["The Eagle is a pub by the river.", "A place.", "The Eagle is a cheap pub by the river."]
    ranked = rank_candidates(texts, CONTEXT, WEIGHTS, violations=[[], [], ["forbidden word 'cheap' x1"]])
    assert [candidate.index for candidate in ranked] == [0, 1, 2]
    assert ranked[2].total > ranked[1].total  # the violator outscores "A place." and still comes last
    assert not ranked[2].acceptable and ranked[2].violations == ["forbidden word 'cheap' x1"]
    assert "after every candidate that meets the hard constraints, because of: forbidden word 'cheap' x1" in ranked[2].explanation


def test_acceptable_candidates_rank_by_total_and_explain_the_gap_to_the_winner():
    texts = ["The Eagle is a coffee shop.", "The Eagle is a pub by the river."]
    ranked = rank_candidates(texts, CONTEXT, WEIGHTS)
    assert [candidate.index for candidate in ranked] == [1, 0] and [c.rank for c in ranked] == [1, 2]
    assert ranked[0].explanation.startswith(
        "ranked 1st of 2: slot_error_rate 0.00 (w 3.0), forbidden_word_hits 0 (w 3.0), keyword_coverage 1.00 (w 2.0); total 1.00")
    # weighted goodness lost: keyword_coverage 2.0 x 1.0 beats slot_error_rate 3.0 x 0.5
    assert ranked[1].explanation.endswith("total 0.56, behind 1st mostly on keyword_coverage (0.00 vs 1.00)")


def test_ties_keep_generation_order():
    ranked = rank_candidates(["The Eagle pub river.", "The Eagle pub river."], CONTEXT, WEIGHTS)
    assert [candidate.index for candidate in ranked] == [0, 1]
    assert "tied with 1st" in ranked[1].explanation


@pytest.mark.parametrize("weights, message", [({"fluency": 1.0}, "unknown metric 'fluency'"),
                                              ({"chrf": -1.0}, "weight of chrf must be a finite number >= 0"),
                                              ({"chrf": math.nan}, "finite")])
def test_bad_weights_are_errors(weights, message):
    with pytest.raises(AigcError, match=message):
        rank_candidates(["text"], CONTEXT, weights)


def test_violations_must_match_the_candidates():
    with pytest.raises(AigcError, match="1 violation lists for 2 candidates"):
        rank_candidates(["a", "b"], CONTEXT, WEIGHTS, violations=[[]])


def test_when_every_candidate_breaks_a_constraint_they_rank_by_total_and_say_so():
    texts = ["A place.", "The Eagle is a pub by the river."]
    ranked = rank_candidates(texts, CONTEXT, WEIGHTS, violations=[["too long"], ["too long"]])
    assert [candidate.index for candidate in ranked] == [1, 0]
    assert ranked[0].explanation.startswith("ranked 1st of 2 (every candidate breaks a hard constraint; this one: too long)")
