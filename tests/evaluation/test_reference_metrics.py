from __future__ import annotations

import math
from pathlib import Path

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.reference import (
    corpus_bleu,
    corpus_chrf,
    corpus_rouge_l,
    e2e_bleu,
    load_e2e_references,
    rouge_l,
    sentence_bleu,
    sentence_chrf,
)

HYPOTHESIS = "the cat sat on the mat"
REFERENCE = "the cat sat on a mat"


def test_e2e_bleu_matches_the_official_script_on_ukp_outputs(shared_data: Path):
    mrs, references = load_e2e_references(shared_data / "e2e" / "devset.csv")
    outputs_path = shared_data / "e2e" / "reference_checks" / "ukp_mlp_seed1_dev_predictions.epoch16.txt"
    outputs = outputs_path.read_text(encoding="utf-8").splitlines()
    assert len(mrs) == len(outputs) == 547
    assert round(e2e_bleu(outputs, references), 4) == 0.7109


def test_load_e2e_references_groups_by_mr_in_first_appearance_order(tmp_path: Path):
    path = tmp_path / "refs.csv"
    path.write_text('mr,ref\n"name[A], food[French]",A is French.\nname[B],B.\n"name[A], food[French]",A serves French food.\n', encoding="utf-8")
    mrs, references = load_e2e_references(path)
    assert mrs == ["name[A], food[French]", "name[B]"]
    assert references == [["A is French.", "A serves French food."], ["B."]]


def test_load_e2e_references_names_missing_columns(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("meaning,text\nx,y\n", encoding="utf-8")
    with pytest.raises(AigcError, match="needs columns 'mr' and 'ref'; its columns are: meaning, text"):
        load_e2e_references(path)


def test_corpus_bleu_matches_hand_computation():
    # Precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty.
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert corpus_bleu([HYPOTHESIS], [[REFERENCE]]) == pytest.approx(expected, abs=1e-9)


def test_corpus_bleu_uses_every_reference_of_a_hypothesis():
    single = corpus_bleu([HYPOTHESIS], [[REFERENCE]])
    multi = corpus_bleu([HYPOTHESIS, "a dog ran"], [[REFERENCE, HYPOTHESIS], ["a dog ran"]])
    assert multi == pytest.approx(100.0)
    assert single < multi


def test_corpus_chrf_is_100_for_an_exact_match_among_references():
    assert corpus_chrf([HYPOTHESIS], [["something else", HYPOTHESIS]]) == pytest.approx(100.0)
    assert corpus_chrf([HYPOTHESIS], [[REFERENCE]]) < 100.0


def test_sentence_bleu_ranks_closer_candidates_higher():
    references = [REFERENCE]
    assert sentence_bleu(REFERENCE, references) == pytest.approx(100.0)
    assert sentence_bleu(HYPOTHESIS, references) > sentence_bleu("a mat", references) > 0.0


def test_sentence_chrf_is_100_for_a_copy_and_lower_otherwise():
    assert sentence_chrf(REFERENCE, [REFERENCE]) == pytest.approx(100.0)
    assert 0.0 < sentence_chrf(HYPOTHESIS, [REFERENCE]) < 100.0


def test_rouge_l_matches_hand_computation():
    # LCS "the cat sat on mat" = 5 tokens; P = R = 5/6.
    assert rouge_l(HYPOTHESIS, [REFERENCE]) == pytest.approx(5 / 6)
    # "the mat" vs REFERENCE: LCS 2, P = 2/2, R = 2/6, F1 = 2 * 1 * (1/3) / (4/3) = 0.5.
    assert rouge_l("The mat!", [REFERENCE]) == pytest.approx(0.5)


def test_rouge_l_takes_the_best_reference_and_handles_chinese_characters():
    assert rouge_l(HYPOTHESIS, ["unrelated words", HYPOTHESIS]) == pytest.approx(1.0)
    assert rouge_l("宽松裤子", ["宽松的裤子"]) == pytest.approx(2 * 1.0 * 0.8 / 1.8)
    assert rouge_l("", [REFERENCE]) == 0.0


def test_corpus_rouge_l_is_the_mean_of_sentence_scores():
    assert corpus_rouge_l([HYPOTHESIS, REFERENCE], [[REFERENCE], [REFERENCE]]) == pytest.approx((5 / 6 + 1) / 2)


@pytest.mark.parametrize(
    ("hypotheses", "references", "message"),
    [
        (["a", "b"], [["a"]], "2 hypotheses but 1 reference lists"),
        (["a"], [[]], "no reference list"),
        (["a"], ["a"], "no reference list"),
        ([], [], "no hypotheses"),
    ],
)
def test_corpus_scores_reject_mismatched_inputs(hypotheses, references, message):
    with pytest.raises(AigcError, match=message):
        corpus_bleu(hypotheses, references)


def test_unknown_bleu_tokenizer_lists_the_known_ones():
    with pytest.raises(AigcError, match="use one of 13a, zh") as error:
        sentence_bleu("a", ["a"], tokenize="spacy")  # type: ignore[arg-type]
    assert error.value.param == "tokenize"


def test_chinese_sentence_bleu_needs_the_zh_tokenizer():
    # With 13a an unspaced Chinese sentence is one token, so a one-character change zeroes the score.
    hypothesis, reference = "这款裤子版型宽松很舒服", "这款裤子版型宽松非常舒服"
    assert sentence_bleu(hypothesis, [reference], tokenize="zh") > 30.0
    assert math.isclose(sentence_bleu(hypothesis, [reference], tokenize="13a"), 0.0, abs_tol=1e-9)
