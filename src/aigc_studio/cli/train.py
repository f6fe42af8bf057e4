"""``aigc train``: parse the flags, call :func:`aigc_studio.training.run.run_training`, print the outcome.

Also runnable as ``python -m aigc_studio.training`` (same flags). With ``--nproc N`` it re-launches itself
through torchrun on N processes (:func:`aigc_studio.training.distributed.launch_torchrun`).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from aigc_studio.errors import AigcError
from aigc_studio.training.config import FLAG_PATHS
from aigc_studio.training.distributed import LaunchConfig, launch_torchrun, read_torchrun_env, strip_launch_flags
from aigc_studio.training.run import prepare_training, run_training

INTERRUPTED_EXIT_CODE = 130  # the shell's convention for "stopped by Ctrl-C"

_MODEL = "Model (override the recipe's [model] table)"
_OPTIM = "Optimiser and schedule"
_RUN = "Evaluation, logging and device"
_DIST = "Distributed (torchrun, DistributedDataParallel)"


def train(
    out: Annotated[Path, typer.Option("--out", help="Run directory; ends as a model directory (best weights).")],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset directory from `aigc data prepare` (gpt, lstm) or `aigc data prepare-images` (vae, gan, diffusion, classifier).")] = None,
    arch: Annotated[str | None, typer.Option("--arch", help="Model architecture: gpt, lstm, vae, gan, diffusion or classifier.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Recipe TOML file (see recipes/); flags override it.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")] = False,
    n_layer: Annotated[int | None, typer.Option(help="Layers.", rich_help_panel=_MODEL)] = None,
    n_head: Annotated[int | None, typer.Option(help="Attention heads (gpt).", rich_help_panel=_MODEL)] = None,
    n_embd: Annotated[int | None, typer.Option(help="Embedding width.", rich_help_panel=_MODEL)] = None,
    block_size: Annotated[int | None, typer.Option(help="Context length in tokens.", rich_help_panel=_MODEL)] = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout probability.", rich_help_panel=_MODEL)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per micro-batch.", rich_help_panel=_OPTIM)] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches per optimiser step.", rich_help_panel=_OPTIM)] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.", rich_help_panel=_OPTIM)] = None,
    min_lr: Annotated[float | None, typer.Option(help="Learning rate at the end of the cosine.", rich_help_panel=_OPTIM)] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="Linear warm-up steps.", rich_help_panel=_OPTIM)] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay (2-D weights only).", rich_help_panel=_OPTIM)] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimiser steps.", rich_help_panel=_OPTIM)] = None,
    eval_interval: Annotated[int | None, typer.Option(help="Steps between validation passes.", rich_help_panel=_RUN)] = None,
    eval_steps: Annotated[int | None, typer.Option(help="Validation batches per pass.", rich_help_panel=_RUN)] = None,
    patience: Annotated[int | None, typer.Option(help="Passes without improvement before stopping (0: never).", rich_help_panel=_RUN)] = None,
    log_interval: Annotated[int | None, typer.Option(help="Steps between metrics.jsonl rows.", rich_help_panel=_RUN)] = None,
    checkpoint_interval: Annotated[int | None, typer.Option(help="Steps between checkpoints.", rich_help_panel=_RUN)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of weights, dropout and data order.", rich_help_panel=_RUN)] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto.", rich_help_panel=_RUN)] = None,
    bf16: Annotated[bool, typer.Option("--bf16", help="bf16 autocast of matmuls (CUDA, or a CPU with AMX/AVX-512 bf16); weights stay fp32.", rich_help_panel=_RUN)] = False,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's own).", rich_help_panel=_RUN)] = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Train on N processes of this machine through torchrun (gloo on CPU, NCCL on GPUs); --batch-size stays the global batch.", rich_help_panel=_DIST)] = None,
    nnodes: Annotated[int, typer.Option("--nnodes", help="Machines in the run (each runs the same command with its --node-rank).", rich_help_panel=_DIST)] = 1,
    node_rank: Annotated[int, typer.Option("--node-rank", help="This machine among --nnodes (0 hosts the rendezvous).", rich_help_panel=_DIST)] = 0,
    rdzv_endpoint: Annotated[str | None, typer.Option("--rdzv-endpoint", help="HOST:PORT of machine 0, the same on every machine (several machines only).", rich_help_panel=_DIST)] = None,
) -> None:
    """Train a GPT or LSTM (text), or a VAE, GAN, diffusion model or classifier (images); the run directory ends as a model directory.

    Settings come from the defaults, then --config, then these flags. Ctrl-C saves a checkpoint; --resume
    continues it on the same loss curve.
    """
    flags = {
        "data": str(data) if data is not None else None,
        "arch": arch,
        "n_layer": n_layer,
        "n_head": n_head,
        "n_embd": n_embd,
        "dropout": dropout,
        "block_size": block_size,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "lr": lr,
        "weight_decay": weight_decay,
        "min_lr": min_lr,
        "warmup_steps": warmup_steps,
        "max_steps": max_steps,
        "eval_interval": eval_interval,
        "eval_steps": eval_steps,
        "patience": patience,
        "log_interval": log_interval,
        "checkpoint_interval": checkpoint_interval,
        "seed": seed,
        "device": device,
        "bf16": "bf16" if bf16 else None,
        "threads": threads,
    }
    overrides = {FLAG_PATHS[name]: value for name, value in flags.items()}
    invocation, arguments = _invocation()
    if nproc is not None:
        launch = LaunchConfig(nproc_per_node=nproc, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint)
        raise typer.Exit(_launch(launch, out, config, overrides, resume, invocation, arguments))
    if nnodes != 1 or node_rank != 0 or rdzv_endpoint is not None:
        raise AigcError("--nnodes, --node-rank and --rdzv-endpoint go with --nproc N (processes per machine); add --nproc", param="nproc")
    env = read_torchrun_env()
    # Under torchrun only rank 0 prints; the others train silently. Whole lines, so commands copy and paste.
    console = Console(highlight=False, soft_wrap=True, quiet=env.rank != 0)
    result = run_training(
        out, config_path=config, overrides=overrides, resume=resume, command=shlex.join([*invocation, *arguments]), console=console
    )
    if result.status == "interrupted":
        if env.is_distributed:  # started by torchrun (or by --nproc, which prints the command itself)
            console.print(f"stopped at step {result.step}; resume with the same launch command plus --resume "
                          "(on any number of processes)")
        else:
            resume_command = shlex.join([*invocation, "--out", str(out), "--resume"])
            console.print(f"stopped at step {result.step}; resume with: {escape(resume_command)}")
        raise typer.Exit(INTERRUPTED_EXIT_CODE)
    how = "stopped early (no improvement)" if result.status == "early_stopped" else "finished"
    console.print(f"[bold green]{how}[/] after {result.step} steps in {result.wall_time_s:.1f} s "
                  f"({result.items_per_s:,.0f} {result.items_name}/s)")
    if result.best_val_loss is not None:
        extra = "".join(f", {name} {value:.3f}" for name, value in result.eval_metrics.items())
        console.print(f"best val loss {result.best_val_loss:.4f}{extra} at step {result.best_step}")
    console.print(f"model directory: {escape(str(result.run_directory))}")


def _launch(
    launch: LaunchConfig,
    out: Path,
    config: Path | None,
    overrides: dict[str, object],
    resume: bool,
    invocation: list[str],
    arguments: list[str],
) -> int:
    """Check the run once here (one line per user error, not one per process), run it under torchrun; its exit status."""
    launch.validate()
    if read_torchrun_env().is_distributed:
        raise AigcError("--nproc starts torchrun itself; drop --nproc when running under torchrun", param="nproc")
    prepare_training(out, config_path=config, overrides=overrides, resume=resume, world_size=launch.nproc_per_node * launch.nnodes)
    code = launch_torchrun(launch, strip_launch_flags(arguments))
    if code == INTERRUPTED_EXIT_CODE:
        resume_command = shlex.join([*invocation, "--out", str(out), "--resume", "--nproc", str(launch.nproc_per_node)])
        Console(highlight=False, soft_wrap=True).print(f"stopped; resume with: {escape(resume_command)}")
    elif code:
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] training processes failed (torchrun exit status {code}); see their messages above")
    return code


def _invocation() -> tuple[list[str], list[str]]:
    """How this process was started (``aigc train`` or ``python -m aigc_studio.training``) and with which flags,
    so that the model card and the resume hint repeat them exactly."""
    if Path(sys.argv[0]).name == "__main__.py":
        return ["python", "-m", "aigc_studio.training"], sys.argv[1:]
    return ["aigc", "train"], sys.argv[2:]
