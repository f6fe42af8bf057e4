from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.originality import NgramIndex
from aigc_studio.evaluation.report import evaluate_jsonl, render_html, write_report

REFS_CSV = """mr,ref
"name[Alimentum], area[city centre], familyFriendly[no]",Alimentum is not family-friendly and is in the city centre.
"name[Alimentum], area[city centre], familyFriendly[no]",Alimentum in the city centre is not a family-friendly place.
"name[The Eagle], eatType[pub], area[riverside]",The Eagle is a pub by the riverside.
"name[The Eagle], eatType[pub], area[riverside]",There is a pub called The Eagle by the river.
"""


def write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    refs = tmp_path / "refs.csv"
    refs.write_text(REFS_CSV, encoding="utf-8")
    hyp = write_lines(tmp_path / "out.jsonl", [
        # attribute order differs from the CSV's: MRs are matched as sets of pairs
        {"id": "a", "text": "Alimentum is not family-friendly and is in the city centre.",
         "attributes": "familyFriendly[no], name[Alimentum], area[city centre]"},
        {"id": "b", "text": "The Eagle is a coffee shop.", "attributes": {"name": "The Eagle", "eatType": "pub", "area": "riverside"},
         "keywords": ["river"], "forbid": "coffee"},
    ])
    return hyp, refs


def test_metrics_corpus_scores_and_slot_counts(files):
    hyp, refs = files
    report = evaluate_jsonl(hyp, references_csv=refs)
    first, second = report.lines
    assert first.scores["slot_error_rate"] == 0.0 and first.scores["sentence_bleu"] == pytest.approx(100.0)
    assert second.scores["slot_error_rate"] == pytest.approx(2 / 3) and second.scores["forbidden_word_hits"] == 1.0
    assert second.slot_errors == ["contradicted eatType[pub]", "missing area[riverside]"]
    assert report.metrics["slot_error_rate"].count == 2 and report.metrics["slot_error_rate"].mean == pytest.approx(1 / 3)
    assert report.metrics["keyword_coverage"].count == 1  # only the line that asks for keywords
    assert {"bleu", "chrf", "rouge_l", "e2e_bleu", "distinct_1", "distinct_2"} <= set(report.corpus)
    assert 0.0 < report.corpus["e2e_bleu"] < 1.0  # the official 0-1 scale
    assert report.corpus["slot_error_rate_pooled"] == pytest.approx(2 / 6)
    eat_type = report.slots["eatType"]
    assert (eat_type.count, eat_type.missing, eat_type.contradicted) == (1, 0, 1)
    assert (report.slots["name"].count, report.slots["name"].error_rate) == (2, 0.0)


def test_line_references_are_used_without_a_csv_and_their_absence_is_noted(tmp_path: Path):
    hyp = write_lines(tmp_path / "out.jsonl", [{"text": "A pub by the river.", "references": "A pub by the river."},
                                               {"text": "No references here."}])
    report = evaluate_jsonl(hyp)
    assert report.lines[0].scores["chrf"] == pytest.approx(100.0) and "chrf" not in report.lines[1].scores
    assert "e2e_bleu" not in report.corpus
    assert "reference scores cover the 1 of 2 lines that have references" in report.notes


def test_chinese_lines_use_chinese_metrics(tmp_path: Path):
    hyp = write_lines(tmp_path / "out.jsonl", [{"text": "这条裤子版型宽松，很显瘦。", "attributes": "类型#裤*版型#宽松"}])
    line = evaluate_jsonl(hyp).lines[0]
    assert line.language == "zh" and "zh_common_char_share" in line.scores and "flesch_reading_ease" not in line.scores


def test_train_index_adds_originality(tmp_path: Path, files):
    hyp, _ = files
    NgramIndex.build(["Alimentum is not family-friendly and is in the city centre."], n=4).save(tmp_path / "index")
    report = evaluate_jsonl(hyp, train_index=tmp_path / "index")
    assert report.lines[0].scores["copied_ngram_share"] == 1.0 and report.lines[1].scores["copied_ngram_share"] == 0.0


def test_html_report_is_self_contained_with_embedded_plots(tmp_path: Path, files):
    hyp, refs = files
    report = evaluate_jsonl(hyp, references_csv=refs)
    html_path, json_path = write_report(report, html_path=tmp_path / "r.html", json_path=tmp_path / "r.json")
    page = html_path.read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 2  # histograms and per-slot bars
    assert "<style>" in page and "<script" not in page and not re.search(r'(src|href)="https?:', page)
    assert "contradicted eatType[pub]" in page and "The Eagle is a coffee shop." in page
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["num_lines"] == 2 and data["slots"]["eatType"]["error_rate"] == 1.0 and data["lines"][1]["id"] == "b"


def test_text_is_escaped_in_html(tmp_path: Path):
    hyp = write_lines(tmp_path / "out.jsonl", [{"text": "<b>bold</b> & co", "attributes": "name[X]"}])
    page = render_html(evaluate_jsonl(hyp))
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page


def test_line_without_text_is_an_error_naming_the_line(tmp_path: Path):
    hyp = write_lines(tmp_path / "out.jsonl", [{"text": "fine"}, {"id": 2, "candidates": []}])
    with pytest.raises(AigcError, match=r"out\.jsonl:2: needs a \"text\" string"):
        evaluate_jsonl(hyp)


def test_attributes_missing_from_the_reference_csv_are_an_error(tmp_path: Path, files):
    _, refs = files
    hyp = write_lines(tmp_path / "out.jsonl", [{"text": "x", "attributes": "name[Nowhere]"}])
    with pytest.raises(AigcError, match="out.jsonl:1: its attributes are not an MR of"):
        evaluate_jsonl(hyp, references_csv=refs)


def test_malformed_attributes_name_file_and_line(tmp_path: Path):
    hyp = write_lines(tmp_path / "out.jsonl", [{"text": "x", "attributes": "name[Nowhere"}])
    with pytest.raises(AigcError, match=r"out\.jsonl:1: unbalanced '\['"):
        evaluate_jsonl(hyp)


def test_nowhere_to_write_is_an_error(files):
    hyp, _ = files
    with pytest.raises(AigcError, match="give --report"):
        write_report(evaluate_jsonl(hyp))
