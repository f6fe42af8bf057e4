"""`aigc generate --watermark`, `aigc watermark detect` and `aigc generate --logprobs` through Typer's CliRunner."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from aigc_studio.cli import watermark
from aigc_studio.cli.generate import generate
from aigc_studio.errors import AigcError

# Registered the way cli/main.py registers them.
app = typer.Typer()
app.command("generate")(generate)
app.add_typer(watermark.app, name="watermark")
runner = CliRunner()

PROMPT = "name[The Eagle], eatType[pub], food[French], area[riverside]"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory: no aigc.toml, and the default key file lands under tmp_path/var."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("AIGC_"):
            monkeypatch.delenv(name)


def generate_json(*flags: str) -> dict:
    result = runner.invoke(app, ["generate", "--model", "e2e-copy", "--prompt", PROMPT, "--json", *flags])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_generate_watermark_then_detect_round_trip(tmp_path: Path, watermark_key_file: Path) -> None:
    generate_json("--watermark", "--max-tokens", "5", "--seed", "1")
    key_file = tmp_path / "var" / "watermark.key"  # the settings' default, made on first use
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    # A fixed key from here on: with a fresh random key, a 90-token text misses z >= 3 now and then.
    key_file.write_bytes(watermark_key_file.read_bytes())
    marked = generate_json("--watermark", "--min-tokens", "90", "--max-tokens", "90", "--n", "4", "--seed", "1")
    assert marked["watermark"]["key_id"] and set(marked["watermark"]) == {"key_id", "gamma", "delta", "context_width"}
    plain = generate_json("--min-tokens", "90", "--max-tokens", "90", "--n", "4", "--seed", "1")
    assert "watermark" not in plain
    rows = [{"id": f"marked-{i}", "text": c["text"]} for i, c in enumerate(marked["candidates"])]
    rows += [{"id": f"plain-{i}", "text": c["text"]} for i, c in enumerate(plain["candidates"])]
    source = write_lines(tmp_path / "in.jsonl", rows)

    result = runner.invoke(app, ["watermark", "detect", "--model", "e2e-copy", "--input", str(source),
                                 "--output", str(tmp_path / "out.jsonl"), "--threshold", "3"])
    assert result.exit_code == 0, result.output
    assert f"4 of 8 texts carry the watermark of key {marked['watermark']['key_id']}" in result.output
    out = read_lines(tmp_path / "out.jsonl")
    assert [row["id"] for row in out] == [row["id"] for row in rows]
    assert [row["watermarked"] for row in out] == [True] * 4 + [False] * 4
    for row in out:
        assert row["num_tokens_scored"] > 40 and 0 <= row["p_value"] <= 1
        assert row["p_value"] == pytest.approx(0.5 * math.erfc(row["z"] / math.sqrt(2)), rel=1e-3)


def test_detect_with_another_key_finds_nothing(tmp_path: Path) -> None:
    marked = generate_json("--watermark", "--watermark-key-file", "mine.key", "--min-tokens", "90", "--max-tokens", "90", "--n", "3")
    source = write_lines(tmp_path / "in.jsonl", [{"id": i, "text": c["text"]} for i, c in enumerate(marked["candidates"])])
    (tmp_path / "other.key").write_text("ab" * 32 + "\n")
    result = runner.invoke(app, ["watermark", "detect", "--model", "e2e-copy", "--input", str(source),
                                 "--output", "out.jsonl", "--key-file", "other.key"])
    assert result.exit_code == 0, result.output
    assert not any(row["watermarked"] for row in read_lines(tmp_path / "out.jsonl"))


def test_detect_names_the_malformed_line(tmp_path: Path) -> None:
    (tmp_path / "k.key").write_text("cd" * 32 + "\n")
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "text": "fine"}\n{"id": 2, "text": \n', encoding="utf-8")
    result = runner.invoke(app, ["watermark", "detect", "--model", "e2e-copy", "--input", str(source),
                                 "--output", "out.jsonl", "--key-file", "k.key"])
    assert isinstance(result.exception, AigcError) and f"{source}:2: malformed JSON" in str(result.exception)
    write_lines(source, [{"id": 1, "text": "fine"}, {"id": 2, "body": "no text"}])
    result = runner.invoke(app, ["watermark", "detect", "--model", "e2e-copy", "--input", str(source),
                                 "--output", "out.jsonl", "--key-file", "k.key"])
    assert isinstance(result.exception, AigcError) and f'{source}:2: no string field "text"' in str(result.exception)
    assert not (tmp_path / "out.jsonl").exists()


def test_detect_never_creates_a_key(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [{"id": 1, "text": "The Eagle is a pub."}])
    result = runner.invoke(app, ["watermark", "detect", "--model", "e2e-copy", "--input", str(source), "--output", "out.jsonl"])
    assert isinstance(result.exception, AigcError) and "watermark key file not found" in str(result.exception)
    assert not (tmp_path / "var").exists()


def test_key_file_without_watermark_flag_is_an_error() -> None:
    result = runner.invoke(app, ["generate", "--model", "e2e-copy", "--prompt", PROMPT, "--watermark-key-file", "k.key"])
    assert isinstance(result.exception, AigcError) and "--watermark-key-file is only used with --watermark" in str(result.exception)


def test_generate_logprobs_in_the_openai_shape() -> None:
    payload = generate_json("--logprobs", "3", "--seed", "2", "--max-tokens", "12")
    candidate = payload["candidates"][0]
    logprobs = candidate["logprobs"]
    assert set(logprobs) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    count = candidate["num_tokens"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == len(logprobs["text_offset"]) == count
    assert all(len(top) == 3 and max(top.values()) >= value - 1e-6
               for top, value in zip(logprobs["top_logprobs"], logprobs["token_logprobs"]))
    assert sum(logprobs["token_logprobs"]) == pytest.approx(candidate["cumulative_logprob"])
    assert logprobs["text_offset"] == sorted(logprobs["text_offset"])


def test_generate_logprobs_table() -> None:
    result = runner.invoke(app, ["generate", "--model", "e2e-copy", "--prompt", PROMPT, "--logprobs", "2", "--seed", "2",
                                 "--max-tokens", "5"])
    assert result.exit_code == 0, result.output
    assert "logprob" in result.output and "alternatives" in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("'")]) == 5
