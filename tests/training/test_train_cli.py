"""`aigc train` / `python -m aigc_studio.training`: every user error is one line and exit status 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigc_studio.cli.main import app
from aigc_studio.training.__main__ import main

TINY_FLAGS = ["--arch", "gpt", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
              "--batch-size", "4", "--max-steps", "4", "--warmup-steps", "1", "--eval-interval", "2",
              "--eval-steps", "1", "--threads", "1"]


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *arguments: object) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["__main__.py", *map(str, arguments)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def assert_one_line_error(code: int, stderr: str, expected: str) -> None:
    assert code == 2
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert expected in stderr
    assert "Traceback" not in stderr


def test_finished_run_prints_where_the_model_is_and_its_out_cannot_be_reused_without_resume(
    monkeypatch, capsys, tmp_path: Path, shakespeare_dataset: Path
) -> None:
    arguments = ["--data", shakespeare_dataset, *TINY_FLAGS, "--out", tmp_path / "run"]
    code, stdout, _ = run_cli(monkeypatch, capsys, *arguments)
    assert code == 0
    assert "finished after 4 steps" in stdout and f"model directory: {tmp_path / 'run'}" in stdout
    code, _, stderr = run_cli(monkeypatch, capsys, *arguments)
    assert_one_line_error(code, stderr, "holds an earlier run; pass --resume to continue it or choose another --out")


def test_data_directory_not_prepared(monkeypatch, capsys, tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    code, _, stderr = run_cli(monkeypatch, capsys, "--data", tmp_path / "raw", *TINY_FLAGS, "--out", tmp_path / "run")
    assert_one_line_error(code, stderr, "dataset.json is missing; run `aigc data prepare")


def test_missing_data_flag(monkeypatch, capsys, tmp_path: Path) -> None:
    code, _, stderr = run_cli(monkeypatch, capsys, *TINY_FLAGS, "--out", tmp_path / "run")
    assert_one_line_error(code, stderr, "pass --data DIR")


def test_unknown_arch(monkeypatch, capsys, tmp_path: Path, shakespeare_dataset: Path) -> None:
    code, _, stderr = run_cli(monkeypatch, capsys, "--data", shakespeare_dataset, "--arch", "rnn", "--out", tmp_path / "run")
    assert_one_line_error(code, stderr, "unknown arch 'rnn'; choose one of: gpt, lstm")


def test_recipe_file_missing(monkeypatch, capsys, tmp_path: Path, shakespeare_dataset: Path) -> None:
    code, _, stderr = run_cli(
        monkeypatch, capsys, "--data", shakespeare_dataset, "--config", tmp_path / "nope.toml", "--out", tmp_path / "run"
    )
    assert_one_line_error(code, stderr, "recipe file not found")


def test_recipe_with_unknown_key(monkeypatch, capsys, tmp_path: Path, shakespeare_dataset: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[schedule]\nmax_iters = 10\n", encoding="utf-8")
    code, _, stderr = run_cli(monkeypatch, capsys, "--data", shakespeare_dataset, "--config", recipe, "--out", tmp_path / "run")
    assert_one_line_error(code, stderr, "[schedule]: unknown key 'max_iters'; valid keys are: max_steps")


def test_resume_without_a_checkpoint(monkeypatch, capsys, tmp_path: Path) -> None:
    code, _, stderr = run_cli(monkeypatch, capsys, "--out", tmp_path / "run", "--resume")
    assert_one_line_error(code, stderr, "no checkpoint at")


@pytest.mark.parametrize(("flag", "value"), [("--batch-size", 0), ("--max-steps", 0), ("--eval-interval", -5), ("--block-size", 0)])
def test_non_positive_sizes(monkeypatch, capsys, tmp_path: Path, shakespeare_dataset: Path, flag: str, value: int) -> None:
    code, _, stderr = run_cli(monkeypatch, capsys, "--data", shakespeare_dataset, *TINY_FLAGS, flag, value, "--out", tmp_path / "run")
    assert_one_line_error(code, stderr, f"must be > 0, got {value}; set {flag}")


def test_aigc_train_is_registered_with_its_flags() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--data", "--arch", "--config", "--out", "--resume", "--checkpoint-interval", "--patience", "--device"):
        assert flag in result.output
