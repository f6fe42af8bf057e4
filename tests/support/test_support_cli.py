"""`aigc support ...` through the real entry point: the knowledge base, train-intents and classify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigc_studio.cli.main import app
from aigc_studio.errors import AigcError
from aigc_studio.support import DEMO_DIR

from .test_intents import banking_slice  # noqa: F401 - the fixture

runner = CliRunner()


def invoke_ok(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_kb_add_list_search_remove(tmp_path: Path, faq_csv: Path) -> None:
    where = ["--database-url", f"sqlite:///{tmp_path / 'cli.db'}", "--index-dir", str(tmp_path / "index")]
    assert "faq.csv" in invoke_ok("support", "kb", "add", str(faq_csv), *where)
    rows = [json.loads(line) for line in invoke_ok("support", "kb", "list", "--json", *where).splitlines()]
    assert len(rows) == 3 and rows[0]["version"] == 1
    hits = [json.loads(line) for line in invoke_ok("support", "kb", "search", "forgot my PIN", "-k", "2", "--json", *where).splitlines()]
    assert len(hits) == 2 and hits[0]["intent"] == "change_pin" and hits[0]["bm25_rank"] == 1
    assert "removed 1 entry" in invoke_ok("support", "kb", "remove", rows[0]["id"], *where)
    assert "removed 2 entries" in invoke_ok("support", "kb", "remove", "faq.csv", *where)
    result = runner.invoke(app, ["support", "kb", "remove", "faq.csv", *where])
    assert isinstance(result.exception, AigcError) and "no knowledge-base entry or file" in str(result.exception)


def test_train_intents_then_classify(tmp_path: Path, banking_slice: Path) -> None:  # noqa: F811
    out = tmp_path / "router"
    printed = invoke_ok(
        "support", "train-intents", "--data", str(banking_slice), "--text-col", "text", "--label-col", "category",
        "--out", str(out), "--holdout", "0.2", "--seed", "1",
    )
    assert "5 intents" in printed and "accuracy" in printed and (out / "model.safetensors").is_file()
    messages = tmp_path / "in.jsonl"
    messages.write_text(
        json.dumps({"id": 1, "text": "my card never arrived"}) + "\n" + json.dumps({"id": 2, "text": "how do I change my PIN?"}) + "\n",
        encoding="utf-8",
    )
    invoke_ok("support", "classify", "--model", str(out), "--input", str(messages), "--output", str(tmp_path / "out.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["intent"]) for r in rows] == [(1, "card_arrival"), (2, "change_pin")]
    assert all(0 < r["confidence"] <= 1 for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train-intents", "--data", "DATA", "--text-col", "message", "--out", "OUT"], "column 'message' not found"),
        (["classify", "--model", "OUT", "--input", "EMPTY", "--output", "o.jsonl"], "is not an intent model"),
        (["kb", "add", "EMPTY_CSV"], "is empty"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, banking_slice: Path, args: list[str], message: str) -> None:  # noqa: F811
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    replace = {"DATA": str(banking_slice), "OUT": str(tmp_path / "none"), "EMPTY": str(tmp_path / "empty.jsonl"), "EMPTY_CSV": str(tmp_path / "empty.csv")}
    args = [replace.get(arg, arg) for arg in args]
    if args[0] == "kb":
        args += ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", "--index-dir", str(tmp_path / "i")]
    result = runner.invoke(app, ["support", *args])
    assert isinstance(result.exception, AigcError) and message in str(result.exception)


def test_error_exit_status_is_two_without_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "aigc_studio.cli.main", "support", "kb", "add", str(empty),
         "--database-url", f"sqlite:///{tmp_path / 'x.db'}", "--index-dir", str(tmp_path / "i")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr


def test_demo_knowledge_base_covers_every_banking77_intent(shared_data: Path) -> None:
    import csv

    categories = json.loads((shared_data / "banking77" / "categories.json").read_text(encoding="utf-8"))
    with open(DEMO_DIR / "bank_faq.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["intent"] for row in rows) == sorted(categories)
    questions = [json.loads(line) for line in (DEMO_DIR / "bank_questions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(questions) >= 100 and {q["intent"] for q in questions} <= set(categories)
