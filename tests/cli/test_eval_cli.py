"""`aigc eval` and `aigc eval index` through the real entry point, on small files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigc_studio.cli.main import app
from aigc_studio.errors import AigcError
from aigc_studio.evaluation.originality import NgramIndex

runner = CliRunner()

CORPUS_CSV = """mr,ref
"name[Alimentum], area[city centre]",Alimentum is a place in the city centre near the river bank.
"name[The Eagle], eatType[pub]",The Eagle is a pub that serves good beer.
"name[The Eagle], eatType[pub]",The Eagle pub is a fine place to drink.
"""


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    refs = tmp_path / "refs.csv"
    refs.write_text(CORPUS_CSV, encoding="utf-8")
    hyp = tmp_path / "out.jsonl"
    rows = [  # lines as `aigc write --output` writes them: the request fields, "text" and "candidates"
        {"id": 1, "attributes": "name[Alimentum], area[city centre]", "text": "Alimentum is a place in the city centre near the river bank.",
         "candidates": [{"rank": 1, "text": "..."}]},
        {"id": 2, "attributes": "name[The Eagle], eatType[pub]", "keywords": ["beer"], "text": "The Eagle is a coffee shop."},
    ]
    hyp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return hyp, refs


def invoke_ok(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_eval_writes_the_html_report_and_json_next_to_it(tmp_path: Path, inputs):
    hyp, refs = inputs
    output = invoke_ok("eval", "--hyp", str(hyp), "--ref", str(refs), "--report", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == 2
    assert data["num_lines"] == 2 and data["inputs"]["ref"] == str(refs)
    assert data["corpus"]["e2e_bleu"] > 0 and data["metrics"]["slot_error_rate"]["mean"] == pytest.approx(0.25)
    assert data["metrics"]["keyword_coverage"]["count"] == 1
    assert "e2e_bleu" in output and "wrote" in output


def test_eval_index_builds_the_originality_index_that_eval_then_uses(tmp_path: Path, inputs):
    hyp, refs = inputs
    output = invoke_ok("eval", "index", "--corpus", str(refs), "--out", str(tmp_path / "index"), "--n", "4")
    assert "indexed 3 texts" in output
    assert NgramIndex.load(tmp_path / "index").n == 4
    invoke_ok("eval", "--hyp", str(hyp), "--train-index", str(tmp_path / "index"), "--json-out", str(tmp_path / "scores.json"))
    data = json.loads((tmp_path / "scores.json").read_text(encoding="utf-8"))
    # line 2 shares one of its three 4-grams ("the eagle is a") with the corpus
    assert [line["scores"]["copied_ngram_share"] for line in data["lines"]] == [1.0, pytest.approx(1 / 3)]
    assert data["lines"][0]["scores"]["longest_copied_span"] == 12
    assert not (tmp_path / "scores.html").exists()  # no --report, no HTML


def test_eval_index_reads_a_named_column_and_rejects_an_unknown_one(tmp_path: Path, inputs):
    _, refs = inputs
    assert "indexed 3 texts" in invoke_ok("eval", "index", "--corpus", str(refs), "--column", "mr", "--out", str(tmp_path / "i"))
    result = runner.invoke(app, ["eval", "index", "--corpus", str(refs), "--column", "summary", "--out", str(tmp_path / "j")])
    assert isinstance(result.exception, AigcError) and "column 'summary' not found" in str(result.exception)


@pytest.mark.parametrize("args, message", [
    ([], "give --hyp FILE.jsonl"),
    (["--hyp", "HYP"], "nowhere to write the evaluation"),
    (["--hyp", "MISSING", "--report", "r.html"], "input file not found"),
])
def test_eval_bad_input_is_one_clear_error(tmp_path: Path, inputs, args, message):
    hyp, _ = inputs
    args = [arg.replace("MISSING", str(tmp_path / "nope.jsonl")).replace("HYP", str(hyp)) for arg in args]
    result = runner.invoke(app, ["eval", *args])
    assert isinstance(result.exception, AigcError) and message in str(result.exception)
