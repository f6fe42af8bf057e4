"""`aigc data prepare | inspect | download` on small slices of the public data sets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigc_studio.cli.data import app
from aigc_studio.data.cleaning import normalize_text
from aigc_studio.data.dataset import TokenDataset
from aigc_studio.errors import AigcError

runner = CliRunner()


def run_ok(*args: str) -> str:
    result = runner.invoke(app, [*args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_prepare_and_inspect_e2e_records(tmp_path: Path, e2e_slice: Path) -> None:
    out = tmp_path / "e2e"
    output = run_ok("prepare", str(e2e_slice), "--source-col", "mr", "--target-col", "ref", "--vocab-size", "512", "--out", str(out))
    assert "records (columns: source=mr, target=ref)" in output and "exact_duplicates" in output
    info = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert info["tokenizer"] == {"kind": "bpe", "vocab_size": 512, "requested_vocab_size": 512, "file": "tokenizer.json"}
    source, target = TokenDataset(out, "train").decode_record(0)
    inspected = run_ok("inspect", str(out), "--samples", "1")
    assert "train samples" in inspected and "→ target" in inspected
    # Brackets such as name[The Vaults] are data, not Rich markup: they must survive into the output.
    assert source.split(",")[0] in inspected and target.split()[0] in inspected and "[" in source


def test_prepare_with_val_input_says_how_it_split_and_what_overlapped(tmp_path: Path, e2e_slice: Path, shared_data: Path) -> None:
    dev_lines = (shared_data / "e2e" / "devset.csv").read_text(encoding="utf-8").splitlines(keepends=True)[:41]
    first_training_row = e2e_slice.read_text(encoding="utf-8").splitlines(keepends=True)[1]
    (tmp_path / "dev.csv").write_text("".join(dev_lines) + first_training_row, encoding="utf-8")
    output = run_ok("prepare", str(e2e_slice), "--val-input", str(tmp_path / "dev.csv"), "--source-col", "mr", "--target-col", "ref",
                    "--tokenizer", "char", "--out", str(tmp_path / "e2e"))
    assert "validation = the --val-input files" in output and "val input" in output
    info = json.loads((tmp_path / "e2e" / "dataset.json").read_text(encoding="utf-8"))
    assert info["split_method"] == "val_inputs" and info["val_inputs"][0]["rows"] == 41  # 40 devset rows + the training row
    dropped = info["overlap"]["train_records_dropped"]
    # Rich wraps long cells inside the table; read the text without the borders.
    flat = " ".join(output.replace("│", " ").split())
    assert f"1 validation sources also occur in the training inputs; their {dropped} training records were dropped" in flat


def test_val_fraction_and_val_input_together_are_rejected(tmp_path: Path, e2e_slice: Path) -> None:
    result = runner.invoke(app, ["prepare", str(e2e_slice), "--val-fraction", "0.2", "--val-input", str(e2e_slice), "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, AigcError) and result.exception.param == "val_fraction"
    assert "either --val-fraction or --val-input" in str(result.exception) and not (tmp_path / "x").exists()


def test_prepare_tinyshakespeare_with_char_tokenizer(tmp_path: Path, shared_data: Path) -> None:
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20_000]
    (tmp_path / "input.txt").write_text(text, encoding="utf-8")
    run_ok("prepare", str(tmp_path / "input.txt"), "--tokenizer", "char", "--out", str(tmp_path / "shakespeare"))
    train = TokenDataset(tmp_path / "shakespeare", "train")
    assert train.format == "text" and train.tokenizer.kind == "char"
    # Characters are tokens, so the split lands at 90% of the characters (+ <bos> in train, <eos> in val).
    assert train.num_tokens == int(len(text.strip()) * 0.9) + 1
    assert train.tokenizer.decode(train.read_tokens(1, 14).tolist()) == "First Citizen:"
    inspected = run_ok("inspect", str(tmp_path / "shakespeare"), "--split", "val", "-n", "2")
    assert "val samples" in inspected and "<eos>" in inspected


def test_prepare_advertisegen_chinese_records_with_bpe(tmp_path: Path, shared_data: Path) -> None:
    lines = (shared_data / "advertisegen" / "dev.json").read_text(encoding="utf-8").splitlines(keepends=True)[:80]
    (tmp_path / "dev.json").write_text("".join(lines), encoding="utf-8")
    run_ok("prepare", str(tmp_path / "dev.json"), "--source-col", "content", "--target-col", "summary",
           "--vocab-size", "600", "--out", str(tmp_path / "adgen"))
    dataset = TokenDataset(tmp_path / "adgen", "train")
    source, target = dataset.decode_record(0)
    assert source.startswith("类型#") and any("\u4e00" <= ch <= "\u9fff" for ch in target)
    assert source in {normalize_text(json.loads(line)["content"]) for line in lines}


def test_download_from_mirror_env_var(tmp_path: Path, shared_data: Path) -> None:
    result = runner.invoke(app, ["download", "tinyshakespeare", "--out", str(tmp_path)], env={"AIGC_DATA_MIRROR": str(shared_data)})
    assert result.exit_code == 0, result.output
    assert "sha256" in result.output and "public domain" in result.output
    assert (tmp_path / "input.txt").read_bytes() == (shared_data / "tinyshakespeare" / "input.txt").read_bytes()


def test_user_errors_surface_as_aigc_error(tmp_path: Path, e2e_slice: Path) -> None:
    result = runner.invoke(app, ["prepare", str(e2e_slice), "--text-col", "body", "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, AigcError) and "columns are: mr, ref" in str(result.exception)
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert isinstance(result.exception, AigcError) and "dataset.json is missing" in str(result.exception)


@pytest.mark.slow
def test_aigc_command_prints_one_error_line_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aigc_studio.cli.main", "data", "inspect", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path} is not a prepared dataset: dataset.json is missing; "
        f"run `aigc data prepare INPUT... --out {tmp_path}` to create it"
    ]
