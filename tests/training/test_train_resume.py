"""Checkpoints under real signals: a SIGKILLed run resumes on the same loss curve; Ctrl-C saves and exits cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from aigc_studio.models.model_dir import load_pretrained
from aigc_studio.training.checkpoint import checkpoint_path, load_checkpoint
from aigc_studio.training.run import run_training

pytestmark = pytest.mark.slow

# Dropout is on so that resuming must restore the RNG state, not only the weights and the optimiser.
RUN_FLAGS = {
    "arch": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.1, "block_size": 32, "batch_size": 8,
    "max_steps": 120, "warmup_steps": 10, "eval_interval": 25, "eval_steps": 2, "log_interval": 1,
    "checkpoint_interval": 10, "threads": 1,
}
FLAG_TO_OVERRIDE = {
    "arch": "model.arch", "n_layer": "model.n_layer", "n_head": "model.n_head", "n_embd": "model.n_embd",
    "dropout": "model.dropout", "block_size": "data.block_size", "batch_size": "data.batch_size",
    "max_steps": "schedule.max_steps", "warmup_steps": "schedule.warmup_steps", "eval_interval": "eval.interval",
    "eval_steps": "eval.steps", "log_interval": "logging.log_interval", "checkpoint_interval": "logging.checkpoint_interval",
    "threads": "threads",
}


def train_command(out: Path, **flags: object) -> list[str]:
    arguments = [sys.executable, "-m", "aigc_studio.training", "--out", str(out)]
    for name, value in flags.items():
        arguments += [f"--{name.replace('_', '-')}"] if value is True else [f"--{name.replace('_', '-')}", str(value)]
    return arguments


def wait_for(condition, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"training exited early: {process.communicate()}"
        assert time.monotonic() < deadline, "training did not get going in time"
        time.sleep(0.002)


def metrics_rows(run_directory: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_directory / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def test_resume_after_sigkill_continues_the_uninterrupted_loss_curve(tmp_path: Path, shakespeare_dataset: Path) -> None:
    # 1. the reference: the same run, uninterrupted
    overrides = {FLAG_TO_OVERRIDE[name]: value for name, value in RUN_FLAGS.items()}
    run_training(tmp_path / "reference", overrides={**overrides, "data.directory": str(shakespeare_dataset)})
    reference = {row["step"]: row for row in metrics_rows(tmp_path / "reference")}

    # 2. the same run in a subprocess, killed without warning once a checkpoint is on disk
    out = tmp_path / "killed"
    process = subprocess.Popen(train_command(out, data=shakespeare_dataset, **RUN_FLAGS), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(checkpoint_path(out).is_file, process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    resume_step = load_checkpoint(checkpoint_path(out)).step
    assert 0 < resume_step < RUN_FLAGS["max_steps"], "the run finished before it could be killed"
    assert not (out / "model.safetensors").exists()

    # 3. resume it and compare every loss logged after the resume point
    resumed = subprocess.run(train_command(out, resume=True), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    rows = metrics_rows(out)
    assert [row["step"] for row in rows] == list(range(1, RUN_FLAGS["max_steps"] + 1))
    after_resume = [row for row in rows if row["step"] > resume_step]
    assert len(after_resume) == RUN_FLAGS["max_steps"] - resume_step
    for row in after_resume:
        assert row["train_loss"] == pytest.approx(reference[row["step"]]["train_loss"], abs=1e-6), row["step"]
        if row["val_loss"] is not None:
            assert row["val_loss"] == pytest.approx(reference[row["step"]]["val_loss"], abs=1e-6), row["step"]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"--out {out} --data {shakespeare_dataset}" in card and f"--out {out} --resume" in card  # both sessions
    reference_weights = load_file(tmp_path / "reference" / "model.safetensors")
    for name, tensor in load_file(out / "model.safetensors").items():
        assert (tensor - reference_weights[name]).abs().max().item() < 1e-6, name


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly_with_a_resume_hint(tmp_path: Path, shakespeare_dataset: Path) -> None:
    out = tmp_path / "run"
    flags = {**RUN_FLAGS, "max_steps": 100_000, "warmup_steps": 0, "checkpoint_interval": 100_000}
    process = subprocess.Popen(
        train_command(out, data=shakespeare_dataset, **flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = out / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and metrics.read_text(encoding="utf-8").count("\n") >= 3, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert f"resume with: python -m aigc_studio.training --out {out} --resume" in stdout
    stopped_step = load_checkpoint(checkpoint_path(out)).step
    assert f"stopped at step {stopped_step};" in stdout
    assert metrics_rows(out)[-1]["step"] == stopped_step
    assert (out / "loss.png").is_file()

    # The saved run continues: here to a few more steps, after which it is a complete model directory.
    result = run_training(out, overrides={"schedule.max_steps": stopped_step + 3}, resume=True)
    assert result.status == "finished" and result.step == stopped_step + 3
    load_pretrained(out)
