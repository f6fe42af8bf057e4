"""Distributed data-parallel training: 2 gloo processes on CPU train exactly as 1 process on the same global batch.

The processes are forked from the test (``torch.multiprocessing``, fork: no second import of torch, so a
2-process run takes seconds) and find each other through the variables torchrun would set. The ``aigc train
--nproc 2`` smoke test goes through the real torchrun.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from aigc_studio.cli import train as cli_train
from aigc_studio.cli.main import main as cli_main
from aigc_studio.data.images import prepare_image_dataset
from aigc_studio.errors import AigcError
from aigc_studio.training import image_tasks
from aigc_studio.training.checkpoint import checkpoint_path, load_checkpoint
from aigc_studio.training.distributed import (
    LaunchConfig,
    read_torchrun_env,
    strip_launch_flags,
    torchrun_command,
)
from aigc_studio.training.run import run_training

TOLERANCE = 1e-5
IMAGE_MODELS: dict[str, dict[str, Any]] = {
    "vae": {"model.base_channels": 8, "model.hidden_dim": 16, "model.latent_dim": 4},
    "gan": {"model.g_channels": 8, "model.d_channels": 8, "model.latent_dim": 8},
    "diffusion": {"model.base_channels": 8, "model.channel_mults": [1, 2], "model.num_train_timesteps": 50},
    "classifier": {"model.base_channels": 8, "model.feature_dim": 16},
}
# Records (rows of different lengths, so the ranks' shards hold different numbers of target tokens) and two
# micro-batches per step (the first backward skips the all-reduce): the two places where a naive
# data-parallel loop drifts from one process. No dropout: each rank draws its own masks.
RUN: dict[str, Any] = {
    "model.arch": "gpt", "model.n_layer": 1, "model.n_head": 2, "model.n_embd": 16, "data.block_size": 160,
    "data.batch_size": 4, "optimiser.grad_accum": 2, "schedule.max_steps": 5, "schedule.warmup_steps": 1,
    # the cosine ends at step 5 whatever max_steps is, so a run stopped at 3 and resumed is the same run
    "schedule.lr_decay_steps": 5, "eval.interval": 5, "eval.steps": 3, "logging.log_interval": 1,
    "logging.checkpoint_interval": 5, "threads": 1,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: int, out: str, overrides: dict[str, Any], resume: bool, watched: str) -> None:
    """One forked process: torchrun's variables, then the library call every rank makes."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    writes: list[str] = []
    if rank:
        # Record every file this rank opens for writing under the test's directory: there must be none.
        def audit(event: str, args: tuple[Any, ...]) -> None:
            if event == "open" and isinstance(args[0], str) and args[0].startswith(watched):
                mode, flags = args[1], args[2]
                if (mode and any(c in mode for c in "wax+")) or (flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                    writes.append(args[0])

        sys.addaudithook(audit)
    run_training(out, overrides=overrides, resume=resume)
    assert not writes, f"rank {rank} wrote {writes}"


def run_distributed(out: Path, overrides: dict[str, Any], *, resume: bool = False, world_size: int = 2) -> None:
    mp.start_processes(_rank_main, args=(world_size, free_port(), str(out), overrides, resume, str(out.parent)),
                       nprocs=world_size, join=True, start_method="fork")


def losses(run_directory: Path) -> dict[int, dict[str, Any]]:
    rows = [json.loads(line) for line in (run_directory / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len({row["step"] for row in rows}), "metrics.jsonl holds a step twice: more than one writer"
    return {row["step"]: row for row in rows}


def assert_same_curve(got: dict[int, dict[str, Any]], expected: dict[int, dict[str, Any]], steps: range) -> None:
    for step in steps:
        assert got[step]["train_loss"] == pytest.approx(expected[step]["train_loss"], abs=TOLERANCE), f"step {step}"
        if expected[step]["val_loss"] is not None:
            assert got[step]["val_loss"] == pytest.approx(expected[step]["val_loss"], abs=TOLERANCE), f"step {step}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, e2e_dataset: Path) -> tuple[dict[str, Any], Path]:
    """One process, 5 steps: the curve every distributed variant must reproduce."""
    overrides = {**RUN, "data.directory": str(e2e_dataset)}
    out = tmp_path_factory.mktemp("reference") / "run"
    run_training(out, overrides=overrides)
    return overrides, out


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(tmp_path: Path, reference: tuple[dict[str, Any], Path]) -> None:
    overrides, reference_run = reference
    run_distributed(tmp_path / "run", overrides)

    got, expected = losses(tmp_path / "run"), losses(reference_run)
    assert sorted(got) == [1, 2, 3, 4, 5]
    assert_same_curve(got, expected, range(1, 6))
    # rank 0 wrote the same run directory one process writes (rank 1 wrote nothing: see _rank_main)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(p.name for p in reference_run.iterdir())
    # every rank's random state is kept for an exact resume on as many processes
    assert len(load_checkpoint(checkpoint_path(tmp_path / "run")).rank_rng) == 1


def test_a_two_process_checkpoint_resumes_in_one_process_and_back(tmp_path: Path, reference: tuple[dict[str, Any], Path]) -> None:
    overrides, reference_run = reference
    expected = losses(reference_run)
    # 2 processes for 3 steps, then 1 process to step 5
    run_distributed(tmp_path / "two-then-one", {**overrides, "schedule.max_steps": 3})
    run_training(tmp_path / "two-then-one", overrides={"schedule.max_steps": 5}, resume=True)
    assert_same_curve(losses(tmp_path / "two-then-one"), expected, range(1, 6))
    # 1 process for 3 steps, then 2 processes to step 5
    run_training(tmp_path / "one-then-two", overrides={**overrides, "schedule.max_steps": 3})
    run_distributed(tmp_path / "one-then-two", {"schedule.max_steps": 5}, resume=True)
    assert_same_curve(losses(tmp_path / "one-then-two"), expected, range(1, 6))


def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step_with_a_checkpoint(tmp_path: Path, e2e_dataset: Path) -> None:
    overrides = {**RUN, "data.directory": str(e2e_dataset), "schedule.max_steps": 100_000, "schedule.lr_decay_steps": 0,
                 "logging.log_interval": 2, "logging.checkpoint_interval": 100_000, "eval.interval": 100_000}
    out = tmp_path / "run"
    context = mp.start_processes(_rank_main, args=(2, free_port(), str(out), overrides, False, str(tmp_path)),
                                 nprocs=2, join=False, start_method="fork")
    metrics = out / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 60
        while not (metrics.is_file() and metrics.read_text(encoding="utf-8").count("\n") >= 2):
            assert time.monotonic() < deadline and all(p.is_alive() for p in context.processes), "training did not get going"
            time.sleep(0.01)
        os.kill(context.pids()[1], signal.SIGINT)  # rank 1 only: rank 0 must learn of it and stop too
        deadline = time.monotonic() + 60
        while not context.join(timeout=1):
            assert time.monotonic() < deadline, "the ranks did not stop after Ctrl-C"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    checkpoint = load_checkpoint(checkpoint_path(out))
    assert checkpoint.step == max(losses(out)) < 100_000
    assert checkpoint.step % 2 == 0  # the ranks agree at logged steps


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused(tmp_path: Path, e2e_dataset: Path) -> None:
    with pytest.raises(mp.ProcessRaisedException, match="must divide among the 2 processes"):
        run_distributed(tmp_path / "run", {**RUN, "data.directory": str(e2e_dataset), "data.batch_size": 5})


@pytest.fixture(scope="module")
def fashion_dataset(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """200 Fashion-MNIST images at 16x16."""
    out = tmp_path_factory.mktemp("fashion") / "dataset"
    prepare_image_dataset(shared_data / "fashion-mnist", out, image_size=16, limit=200)
    return out


@pytest.mark.parametrize("arch", ["vae", "gan", "diffusion", "classifier"])
def test_every_image_model_trains_on_two_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fashion_dataset: Path, arch: str
) -> None:
    # (batch-norm statistics and noise draws are per rank, so these runs differ from one process: only that
    # each trained network is wrapped, a GAN's generator and discriminator both, and rank 0 alone writes)
    monkeypatch.setattr(image_tasks, "GRID_DIFFUSION_STEPS", 2)  # inherited by the forked ranks
    overrides = {**IMAGE_MODELS[arch], "model.arch": arch, "data.directory": str(fashion_dataset), "data.batch_size": 8,
                 "optimiser.grad_accum": 2, "schedule.max_steps": 2, "schedule.warmup_steps": 1, "eval.interval": 2,
                 "eval.steps": 2, "logging.log_interval": 1, "threads": 1}
    run_distributed(tmp_path / "run", overrides)
    rows = losses(tmp_path / "run")
    assert sorted(rows) == [1, 2] and all(math.isfinite(row["train_loss"]) for row in rows.values())
    assert (tmp_path / "run" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK=2 is outside"),
        ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "LOCAL_RANK is not set"),
        ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two' is not an integer"),
        ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, "MASTER_ADDR is not set"),
        ({"WORLD_SIZE": "4", "RANK": "1", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
         "LOCAL_RANK=2 is outside"),
    ],
)
def test_inconsistent_torchrun_variables_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(AigcError, match=message):
        read_torchrun_env(environ)


def test_without_torchrun_variables_the_run_is_one_process() -> None:
    env = read_torchrun_env({})
    assert (env.rank, env.world_size, env.is_distributed) == (0, 1, False)


def test_the_launcher_passes_training_flags_through_and_keeps_its_own() -> None:
    arguments = ["--out", "o", "--nproc", "2", "--nnodes=2", "--max-steps", "5", "--rdzv-endpoint", "h:1", "--node-rank", "1"]
    assert strip_launch_flags(arguments) == ["--out", "o", "--max-steps", "5"]
    single = torchrun_command(LaunchConfig(nproc_per_node=2), ["--out", "o"])
    assert "--standalone" in single and single[-4:] == ["-m", "aigc_studio.training", "--out", "o"]
    multi = torchrun_command(LaunchConfig(nproc_per_node=8, nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29500"), [])
    assert {"--nnodes=2", "--node-rank=1", "--rdzv-endpoint=10.0.0.1:29500"} <= set(multi) and "--standalone" not in multi
    with pytest.raises(AigcError, match="needs --rdzv-endpoint"):
        torchrun_command(LaunchConfig(nproc_per_node=2, nnodes=2), [])


@pytest.mark.slow
def test_aigc_train_nproc_2_runs_under_torchrun(tmp_path: Path, shakespeare_dataset: Path) -> None:
    command = [str(Path(sys.executable).parent / "aigc"), "train", "--nproc", "2", "--data", str(shakespeare_dataset),
               "--out", str(tmp_path / "run"), "--arch", "gpt", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
               "--block-size", "16", "--batch-size", "4", "--max-steps", "2", "--warmup-steps", "1", "--eval-interval", "2",
               "--eval-steps", "1", "--log-interval", "1", "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("finished after 2 steps") == 1  # rank 0 alone reports
    assert sorted(losses(tmp_path / "run")) == [1, 2]
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_aigc_train_nproc_checks_the_run_before_starting_any_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, shakespeare_dataset: Path
) -> None:
    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("torchrun was started for a run that cannot work")

    monkeypatch.setattr(cli_train, "launch_torchrun", started)
    monkeypatch.setattr(sys, "argv", ["aigc", "train", "--nproc", "2", "--data", str(shakespeare_dataset),
                                      "--out", str(tmp_path / "run"), "--batch-size", "5"])
    with pytest.raises(SystemExit) as exit_info:
        cli_main()
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2 and stderr.count("\n") == 1, stderr
    assert "--batch-size 5 is the global batch and must divide among the 2 processes" in stderr
