"""`aigc pii detect` and `aigc moderate` round trips through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from aigc_studio.cli.safety import moderate, pii_app
from aigc_studio.errors import AigcError

# Registered the way cli/main.py registers them.
app = typer.Typer()
app.add_typer(pii_app, name="pii")
app.command("moderate")(moderate)
runner = CliRunner()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_pii_detect_round_trip(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            json.dumps({"id": 1, "text": "Mr. John Smith, call 13812345678 or mail john@example.com"}),
            json.dumps({"id": 2, "text": "订单号 2024061512345678 已发货"}, ensure_ascii=False),
        ],
    )
    result = runner.invoke(app, ["pii", "detect", "--input", str(source), "--output", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    assert "1 of 2 lines hold personal data" in result.output
    first, second = read_lines(tmp_path / "out.jsonl")
    assert first["id"] == 1
    assert [(e["type"], e["text"]) for e in first["entities"]] == [
        ("PERSON", "John Smith"), ("PHONE", "13812345678"), ("EMAIL", "john@example.com"),
    ]  # fmt: skip
    assert first["redacted"] == "Mr. <PERSON_1>, call <PHONE_1> or mail <EMAIL_1>"
    entity = first["entities"][1]
    assert first["text"][entity["start"] : entity["end"]] == "13812345678"
    assert second["entities"] == [] and second["redacted"] == second["text"]


def test_pii_detect_hash_mode_reads_the_key_from_the_environment(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "a", "text": "mail a@x.com"})])
    output = tmp_path / "out.jsonl"
    result = runner.invoke(
        app, ["pii", "detect", "-i", str(source), "-o", str(output), "--mode", "hash"], env={"AIGC_PII_HASH_KEY": "k"}
    )
    assert result.exit_code == 0, result.output
    assert read_lines(output)[0]["redacted"].startswith("mail <EMAIL:")
    failed = runner.invoke(app, ["pii", "detect", "-i", str(source), "-o", str(output), "--mode", "hash"], env={"AIGC_PII_HASH_KEY": ""})
    assert isinstance(failed.exception, AigcError) and "hash mode needs a secret key" in str(failed.exception)


def test_moderate_round_trip_with_custom_policy(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        [json.dumps({"id": 1, "text": "I will k1ll you"}), json.dumps({"id": 2, "text": "Killer deals at Globex"})],
    )
    output = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["moderate", "--input", str(source), "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "2 lines: 1 flagged, 1 blocked" in result.output
    threat, deal = read_lines(output)
    assert threat["flagged"] and threat["blocked"] and threat["action"] == "block"
    assert threat["categories"]["violence"] >= 0.5
    assert threat["matches"] == [{"category": "violence", "start": 7, "end": 15, "text": "k1ll you", "rule": "en:kill you"}]
    assert not deal["flagged"] and deal["matches"] == []

    policy = tmp_path / "policy.toml"
    policy.write_text('[categories.competitor]\naction = "redact"\nen = ["globex"]\n', encoding="utf-8")
    result = runner.invoke(app, ["moderate", "-i", str(source), "-o", str(output), "--policy", str(policy)])
    assert result.exit_code == 0, result.output
    threat, deal = read_lines(output)
    assert set(threat["categories"]) == {"competitor"} and not threat["flagged"]
    assert deal["flagged"] and not deal["blocked"] and deal["action"] == "redact"


@pytest.mark.parametrize("command", [["moderate"], ["pii", "detect"]])
def test_malformed_jsonl_reports_the_line_number(tmp_path: Path, command: list[str]) -> None:
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": 1, "text": "ok"}), "", '{"id": 2, "text": "broken'])
    result = runner.invoke(app, [*command, "-i", str(source), "-o", str(tmp_path / "out.jsonl")])
    assert isinstance(result.exception, AigcError)
    assert f"{source}:3: malformed JSON" in str(result.exception)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("command", [["moderate"], ["pii", "detect"]])
def test_line_without_text_reports_the_line_number(tmp_path: Path, command: list[str]) -> None:
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": 1, "text": "ok"}), json.dumps({"id": 2, "body": "x"})])
    result = runner.invoke(app, [*command, "-i", str(source), "-o", str(tmp_path / "out.jsonl")])
    assert isinstance(result.exception, AigcError)
    assert f'{source}:2: no string field "text"' in str(result.exception)
