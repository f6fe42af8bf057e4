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
    assert "neighbour vote weight" in printed
    messages = tmp_path / "in.jsonl"
    messages.write_text(
        json.dumps({"id": 1, "text": "my card never arrived"}) + "\n" + json.dumps({"id": 2, "text": "how do I change my PIN?"}) + "\n",
        encoding="utf-8",
    )
    invoke_ok("support", "classify", "--model", str(out), "--input", str(messages), "--output", str(tmp_path / "out.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["intent"]) for r in rows] == [(1, "card_arrival"), (2, "change_pin")]
    assert all(0 < r["confidence"] <= 1 for r in rows)
    alone = invoke_ok(
        "support", "train-intents", "--data", str(banking_slice), "--out", str(tmp_path / "alone"), "--neighbours", "0",
    )
    assert "accuracy" in alone and "neighbour vote" not in alone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train-intents", "--data", "DATA", "--text-col", "message", "--out", "OUT"], "column 'message' not found"),
        (["classify", "--model", "EMPTY_DIR", "--input", "EMPTY", "--output", "o.jsonl"], "is not an intent model"),
        (["classify", "--model", "OUT", "--input", "EMPTY", "--output", "o.jsonl"], "not found"),
        (["kb", "add", "EMPTY_CSV"], "is empty"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, banking_slice: Path, args: list[str], message: str) -> None:  # noqa: F811
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    (tmp_path / "empty-dir").mkdir()
    replace = {"DATA": str(banking_slice), "OUT": str(tmp_path / "none"), "EMPTY_DIR": str(tmp_path / "empty-dir"), "EMPTY": str(tmp_path / "empty.jsonl"), "EMPTY_CSV": str(tmp_path / "empty.csv")}
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


# -- the assistant's commands ---------------------------------------------------------------------------------


def test_chat_reads_messages_from_stdin_until_quit(support_home: Path) -> None:
    where = ["--database-url", f"sqlite:///{support_home / 'aigc.db'}", "--index-dir", str(support_home / "support" / "index")]
    conversation = "Hi\nmy card hasn't arrived\n\nI want to talk to a human\n/quit\nnever read\n"
    result = runner.invoke(app, ["support", "chat", "--customer", "C1001", "--session", "cli-1", *where],
                           input=conversation, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "chatting as Alice Chen" in result.output and "Hi Alice!" in result.output
    assert "intent card_arrival" in result.output and "sources:" in result.output
    assert "handed off: ticket T-1001" in result.output and "never read" not in result.output
    tickets = [json.loads(line) for line in invoke_ok("support", "tickets", "--status", "open", "--json", *where[:2]).splitlines()]
    assert [t["id"] for t in tickets] == ["T-1001"] and tickets[0]["session_id"] == "cli-1"
    # A bad line is reported and the conversation goes on; end of input ends it.
    result = runner.invoke(app, ["support", "chat", "--customer", "C1002", *where], input=("x" * 2001) + "\nHello\n",
                           catch_exceptions=False)
    assert result.exit_code == 0 and "error: the message has 2,001 characters" in result.output
    assert "Good day, Daniel Okafor" in result.output


def test_chat_with_an_unknown_customer_fails_before_reading(support_home: Path) -> None:
    where = ["--database-url", f"sqlite:///{support_home / 'aigc.db'}", "--index-dir", str(support_home / "support" / "index")]
    result = runner.invoke(app, ["support", "chat", "--customer", "C404", *where], input="Hi\n")
    assert isinstance(result.exception, AigcError) and "no customer with id 'C404'" in str(result.exception)


def test_customers_load_and_list(tmp_path: Path) -> None:
    where = ["--database-url", f"sqlite:///{tmp_path / 'c.db'}"]
    assert "3 added, 0 updated; 2 past tickets" in invoke_ok("support", "customers", "load", str(DEMO_DIR / "customers.json"), *where)
    assert "0 added, 3 updated" in invoke_ok("support", "customers", "load", str(DEMO_DIR / "customers.json"), *where)
    rows = [json.loads(line) for line in invoke_ok("support", "customers", "list", "--json", *where).splitlines()]
    assert [r["id"] for r in rows] == ["C1001", "C1002", "C1003"] and rows[0]["orders"][0]["id"] == "ORD-5521"
    empty = tmp_path / "empty.json"
    empty.write_text("", encoding="utf-8")
    result = runner.invoke(app, ["support", "customers", "load", str(empty), *where])
    assert isinstance(result.exception, AigcError) and "is empty" in str(result.exception)


def test_the_bundled_banking_router_classifies_by_name(tmp_path: Path) -> None:
    messages = tmp_path / "in.jsonl"
    messages.write_text('{"id": 1, "text": "I still have not received my new card"}\n'
                        '{"id": 2, "text": "why did my top up fail?"}\n', encoding="utf-8")
    invoke_ok("support", "classify", "--model", "banking-intents", "--input", str(messages), "--output", str(tmp_path / "out.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["intent"] for row in rows] == ["card_arrival", "top_up_failed"]
    assert all(0 < row["confidence"] <= 1 for row in rows)
