"""Batch jobs resume after a crash with exactly one output per input line: in process (an exception part-way, a
torn last line) and for real (`aigc write` killed with SIGKILL, then run again)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aigc_studio.cli.main import app
from aigc_studio.content.batch import partial_path, run_batch
from aigc_studio.data.tokenizer import train_tokenizer
from aigc_studio.errors import AigcError
from aigc_studio.models.gpt import GPT, GPTConfig
from aigc_studio.models.model_dir import GenerationConfig, save_pretrained

runner = CliRunner()
FINGERPRINT = {"input_sha256": "abc", "task": "ad-copy"}


class Crash(Exception):
    pass


def job(calls: list[int], crash_at: int | None = None):
    def process(index: int) -> tuple[dict, bool]:
        if index == crash_at:
            raise Crash
        calls.append(index)
        return {"id": index, "text": f"line {index}"}, index % 2 == 0

    return process


def test_a_rerun_after_a_crash_does_only_the_missing_lines(tmp_path: Path):
    output, lines = tmp_path / "out.jsonl", [1, 2, 4, 5, 7]  # input line numbers (blank lines skipped)
    calls: list[int] = []
    with pytest.raises(Crash):
        run_batch(lines, job(calls, crash_at=3), output, fingerprint=FINGERPRINT)
    assert calls == [0, 1, 2] and not output.exists() and partial_path(output).exists()
    report = run_batch(lines, job(calls), output, fingerprint=FINGERPRINT)
    assert calls == [0, 1, 2, 3, 4]  # each line processed exactly once over both runs
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == [0, 1, 2, 3, 4]
    assert (report.total, report.resumed, report.flagged) == (5, 3, 3) and not partial_path(output).exists()


def test_a_torn_last_line_is_cut_off_and_done_again(tmp_path: Path):
    output, calls = tmp_path / "out.jsonl", []
    with pytest.raises(Crash):
        run_batch([1, 2, 3], job(calls, crash_at=2), output, fingerprint=FINGERPRINT)
    with open(partial_path(output), "ab") as handle:
        handle.write(b'{"line": 3, "flagged": false, "outp')  # the crash cut this write short
    run_batch([1, 2, 3], job(calls), output, fingerprint=FINGERPRINT)
    assert calls == [0, 1, 2] and len(output.read_text().splitlines()) == 3


def test_a_partial_file_of_another_job_is_refused(tmp_path: Path):
    output = tmp_path / "out.jsonl"
    with pytest.raises(Crash):
        run_batch([1, 2], job([], crash_at=1), output, fingerprint=FINGERPRINT)
    with pytest.raises(AigcError, match="made by a job with another input.*delete the file"):
        run_batch([1, 2], job([]), output, fingerprint={**FINGERPRINT, "input_sha256": "def"})


@pytest.fixture(scope="module")
def tiny_records_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 1-layer character GPT for records prompts: it writes noise, but every step of a real job runs."""
    tokenizer = train_tokenizer(["name[The Eagle], eatType[pub], food[French], area[riverside] The Eagle is a pub."], kind="char")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=16)).eval()
    return save_pretrained(model, tokenizer, tmp_path_factory.mktemp("records-model"),
                           generation_config=GenerationConfig(prompt_format="records", temperature=1.0, max_tokens=24))


def test_aigc_write_killed_mid_batch_finishes_on_rerun_with_one_output_per_input(tmp_path: Path, tiny_records_model: Path):
    rows = [{"id": index, "attributes": f"name[Place {index}], eatType[pub], area[riverside]"} for index in range(40)]
    source = tmp_path / "big.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "out.jsonl"
    args = ["write", "ad-copy", "--input", str(source), "--output", str(output), "--model", str(tiny_records_model),
            "--n", "2", "--seed", "5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen([sys.executable, "-m", "aigc_studio.cli.main", *args], cwd=tmp_path, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial, deadline = partial_path(output), time.monotonic() + 180
    while not (partial.exists() and partial.read_bytes().count(b"\n") >= 6):  # the header and at least 5 lines
        assert job.poll() is None, job.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the batch did not start in time"
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    done_before = partial.read_bytes().count(b"\n") - 1
    assert not output.exists() and 5 <= done_before < len(rows)

    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    assert f"wrote {len(rows)} results" in rerun.stdout and f"{done_before} were done by an earlier" in rerun.stdout
    results = [json.loads(line) for line in output.read_text().splitlines()]
    assert [result["id"] for result in results] == list(range(len(rows)))  # each input once, in input order
    assert not partial.exists()

    # Seeded, so the resumed job wrote what an uninterrupted one writes.
    fresh = tmp_path / "fresh.jsonl"
    assert runner.invoke(app, [*args[:5], str(fresh), *args[6:]]).exit_code == 0
    assert [json.loads(line)["text"] for line in fresh.read_text().splitlines()] == [result["text"] for result in results]
