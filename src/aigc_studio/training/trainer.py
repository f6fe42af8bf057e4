"""The one Trainer: runs any :class:`~aigc_studio.training.tasks.TrainingTask` from a :class:`TrainConfig`.

Per step: set the scheduled learning rate, let the task take an optimiser step, and every so often log a
metrics row, evaluate (keep-best, early stopping) and checkpoint. Ctrl-C finishes the current step, saves a
checkpoint and returns; ``fit(resume_from=...)`` continues from a checkpoint on the same loss curve, because
the data order and the schedule are functions of the step and every RNG state is restored.

The run directory ends as the task's model directory holding the best weights (by validation loss), plus
``metrics.jsonl``, ``loss.png``, ``train_config.toml`` and ``checkpoint/``. Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write, write_jsonl
from aigc_studio.training.checkpoint import (
    Checkpoint,
    capture_rng_state,
    checkpoint_path,
    restore_rng_state,
    save_checkpoint,
)
from aigc_studio.training.config import TrainConfig
from aigc_studio.training.distributed import (
    all_gather_objects,
    all_reduce_sum,
    any_rank,
    barrier,
    rank_seed,
    wrap_networks,
)
from aigc_studio.training.plots import plot_loss_curves
from aigc_studio.training.progress import TrainingProgress
from aigc_studio.training.schedule import scheduled_learning_rate
from aigc_studio.training.tasks import RunReport, StepContext, TrainingTask, move_to_device

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT_FILE = "loss.png"
CONFIG_FILE = "train_config.toml"


@dataclass
class TrainResult:
    """How :meth:`Trainer.fit` ended.

    Attributes:
        status: ``"finished"`` (reached max_steps), ``"early_stopped"`` or ``"interrupted"`` (Ctrl-C).
        step: completed optimiser steps.
        run_directory: where everything was written.
        best_val_loss, best_step: the kept weights' validation loss and step (None before any evaluation).
        eval_metrics: the task's extra metrics at the best step.
        wall_time_s: wall-clock seconds over all sessions of the run.
        items_per_s: training throughput in ``items_name`` per second.
        items_name: the throughput unit.
    """

    status: str
    step: int
    run_directory: Path
    best_val_loss: float | None
    best_step: int | None
    eval_metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    items_per_s: float = 0.0
    items_name: str = "items"


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available) as a ``torch.device``.

    Raises:
        AigcError: CUDA was asked for but is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AigcError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto", param="device")
    return torch.device(name)


def check_run_directory(run_directory: Path, *, resuming: bool) -> None:
    """A fresh run needs an empty or absent directory.

    Raises:
        AigcError: not resuming and ``run_directory`` holds files (an earlier run, or anything else).
    """
    if resuming or not run_directory.is_dir() or not any(run_directory.iterdir()):
        return
    if checkpoint_path(run_directory).is_file():
        raise AigcError(f"{run_directory} holds an earlier run; pass --resume to continue it or choose another --out", param="out")
    raise AigcError(f"{run_directory} already holds files; choose another --out (or empty it)", param="out")


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Trains ``task`` as ``config`` says, writing into ``run_directory``.

    Args:
        task: the model kind and its data.
        config: the run's settings (already validated).
        run_directory: the output directory; it must be empty or absent unless resuming.
        command: the command line that started the run, for the model card.
        rank, world_size: this process among several (only rank 0 writes files and prints).
        console: where progress goes (default: stdout).
    """

    def __init__(
        self,
        task: TrainingTask,
        config: TrainConfig,
        run_directory: str | Path,
        *,
        command: str = "",
        rank: int = 0,
        world_size: int = 1,
        console: Console | None = None,
    ) -> None:
        self.task = task
        self.config = config
        self.run_directory = Path(run_directory)
        self.command = command
        self.rank = rank
        self.world_size = world_size
        self.is_writer = rank == 0
        self.console = console or Console(highlight=False)
        self._stop_requested = False

    def fit(self, resume_from: Checkpoint | None = None) -> TrainResult:
        """Train until ``schedule.max_steps``, early stopping or Ctrl-C.

        Args:
            resume_from: a checkpoint of this run to continue from (see :func:`load_checkpoint`).

        Returns:
            How the run ended; the run directory holds the model directory unless it was interrupted.

        Raises:
            AigcError: a fresh run into a directory that already holds files, no CUDA when asked for,
                or an empty validation split.
        """
        config = self.config
        check_run_directory(self.run_directory, resuming=resume_from is not None)
        # Every rank checks before rank 0 writes anything, or a slower rank would find rank 0's files.
        barrier()
        # 1. device, threads and seeds, before anything random happens
        device = resolve_device(config.device)
        if device.type == "cuda" and self.world_size > 1:
            device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU (set when joining the group)
        if config.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise AigcError("this GPU has no bf16 support; drop --bf16", param="precision")
        if config.threads:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed)

        # 2. model and optimisers, then the saved state on top when resuming
        model = self.task.build_model().to(device)
        optimisers = self.task.configure_optimisers(model, config.optimiser)
        if resume_from is None:
            state = Checkpoint(step=0, config=config.to_dict(), model={}, optimisers={})
        else:
            state = resume_from
            try:
                model.load_state_dict(resume_from.model)
            except RuntimeError:  # shapes differ: e.g. --data now names a data set with another vocabulary
                raise AigcError(
                    "the checkpoint does not fit the model these settings build; resume with the run's original --data",
                    param="resume",
                ) from None
            for name, optimiser in optimisers.items():
                optimiser.load_state_dict(resume_from.optimisers[name])
        self._seed_rank(resume_from)
        state.config = config.to_dict()
        if self.command:
            state.commands.append(self.command)
        if self.is_writer:
            self.run_directory.mkdir(parents=True, exist_ok=True)
            atomic_write(self.run_directory / CONFIG_FILE, config.to_toml())
            write_jsonl(self.run_directory / METRICS_FILE, state.metrics)  # drops rows past the checkpoint

        # 3. the loop, through DDP wrappers when distributed (every rank holds the same weights from here on)
        model.train()
        networks = wrap_networks(self.task.trained_networks(model), device)
        with self._stop_on_sigint(), TrainingProgress(
            self.console, config.schedule.max_steps, state.step, self.task.items_name, enabled=self.is_writer
        ) as progress:
            status = self._train_loop(model, optimisers, state, device, progress, networks)
            if status == "interrupted":
                progress.print(f"interrupted at step {state.step}; checkpoint saved to {checkpoint_path(self.run_directory)}")

        # 4. the model directory from the best weights, and the run's report
        report = self._report(model, state, status)
        if self.is_writer:
            write_jsonl(self.run_directory / METRICS_FILE, state.metrics)
            plot_loss_curves(state.metrics, self.run_directory / LOSS_PLOT_FILE, title=self.run_directory.name)
            if status != "interrupted":
                if state.best_model is not None:
                    model.load_state_dict(state.best_model)
                self.task.save_model(model, self.run_directory, report)
        return TrainResult(
            status=status,
            step=state.step,
            run_directory=self.run_directory,
            best_val_loss=state.best_val_loss,
            best_step=state.best_step,
            eval_metrics=report.eval_metrics,
            wall_time_s=report.wall_time_s,
            items_per_s=report.items_per_s,
            items_name=self.task.items_name,
        )

    def _train_loop(
        self,
        model: nn.Module,
        optimisers: dict[str, torch.optim.Optimizer],
        state: Checkpoint,
        device: torch.device,
        progress: TrainingProgress,
        networks: dict[str, nn.Module],
    ) -> str:
        config = self.config
        max_steps, patience = config.schedule.max_steps, config.eval.patience
        items_per_step = self.task.items_per_batch * config.optimiser.grad_accum
        bf16_autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
        context = StepContext(
            step=state.step,
            grad_accum=config.optimiser.grad_accum,
            grad_clip=config.optimiser.grad_clip,
            device=device,
            rank=self.rank,
            world_size=self.world_size,
            autocast=bf16_autocast if config.precision == "bf16" else contextlib.nullcontext,
            networks=networks,
        )
        clock = _RunClock(state)
        checkpointed_step = state.step
        metrics_file = (self.run_directory / METRICS_FILE).open("a", encoding="utf-8") if self.is_writer else None
        status = "finished"
        try:
            while state.step < max_steps:
                if patience and state.evals_since_best >= patience:
                    status = "early_stopped"
                    break
                if self._stop_agreed(state.step, device):
                    status = "interrupted"
                    break
                # 1. one optimiser step at the scheduled learning rate
                lr = scheduled_learning_rate(state.step, config.optimiser, config.schedule)
                for optimiser in optimisers.values():
                    for group in optimiser.param_groups:
                        group["lr"] = lr
                context.step = state.step
                loss = self.task.train_step(model, optimisers, context)
                state.step += 1
                progress.advance(state.step)

                # 2. log, evaluate and checkpoint when due
                evaluate_now = state.step % config.eval.interval == 0 or state.step == max_steps
                if not (evaluate_now or state.step % config.logging.log_interval == 0):
                    continue
                # the one device sync of a logged step; the mean of the ranks' shares is the global batch's loss
                train_loss = all_reduce_sum(loss).item() / self.world_size
                seconds = clock.end_training_span()
                items_per_s = (state.step - clock.span_start_step) * items_per_step / max(seconds, 1e-9)
                row: dict[str, Any] = {
                    "step": state.step,
                    "train_loss": train_loss,
                    "val_loss": None,
                    "lr": lr,
                    f"{self.task.items_name}_per_s": items_per_s,
                    "elapsed_s": clock.elapsed_s(),
                }
                progress.update_stats(train_loss, lr, items_per_s)
                if evaluate_now:
                    row.update(self._evaluate_and_keep_best(model, state, context, progress))
                state.metrics.append(row)
                if metrics_file is not None:
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                if state.step % config.logging.checkpoint_interval == 0 or state.step == max_steps:
                    self._save_checkpoint(model, optimisers, state, clock)
                    checkpointed_step = state.step
                clock.start_training_span(state.step)  # evaluation and checkpoint time is not training time
        finally:
            if metrics_file is not None:
                metrics_file.close()
        clock.end_training_span()
        if state.step != checkpointed_step:
            self._save_checkpoint(model, optimisers, state, clock)
        return status

    def _evaluate_and_keep_best(
        self, model: nn.Module, state: Checkpoint, context: StepContext, progress: TrainingProgress
    ) -> dict[str, Any]:
        """Validate, remember the weights if they are the best so far, and count passes without improvement."""
        val_loss = self.evaluate(model, context)
        extra = self.task.eval_metrics(val_loss)
        if self.is_writer:
            self.task.after_evaluation(model, state.step, self.run_directory)
        if state.best_val_loss is None or val_loss < state.best_val_loss:
            # A CPU copy: it must survive further training, and it goes into the checkpoint as is.
            state.best_model = {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}
            state.best_val_loss, state.best_step, state.evals_since_best = val_loss, state.step, 0
            marker = " (best)"
        else:
            state.evals_since_best += 1
            marker = f" (best {state.best_val_loss:.4f} at step {state.best_step})"
        shown = "".join(f", {name} {value:.3f}" for name, value in extra.items())
        progress.print(f"step {state.step}: val loss {val_loss:.4f}{shown}{marker}")
        return {"val_loss": val_loss, **extra}

    def evaluate(self, model: nn.Module, context: StepContext) -> float:
        """Mean loss over the first ``eval.steps`` validation batches (the same batches every time).

        When distributed, rank ``r`` takes batches ``r, r + world_size, ...`` and the sums are all-reduced, so
        every rank gets the same value (and makes the same keep-best and early-stopping decisions).

        Raises:
            AigcError: the validation split yields no batch.
        """
        total = torch.zeros(2, device=context.device, dtype=torch.float64)  # (sum of batch losses, batches)
        model.eval()  # no dropout, and no draw from the RNG, so evaluating never changes the training curve
        with torch.no_grad(), context.autocast():
            for index, batch in enumerate(itertools.islice(self.task.eval_batches(), self.config.eval.steps)):
                if index % context.world_size == context.rank:
                    total[0] += self.task.loss(model, move_to_device(batch, context.device)).double()
                    total[1] += 1
        model.train()
        loss_sum, batches = all_reduce_sum(total).tolist()
        if not batches:
            raise AigcError(
                f"the validation split of {self.config.data.directory} is empty; prepare the data with a larger --val-fraction",
                param="data",
            )
        return loss_sum / batches

    def _save_checkpoint(
        self, model: nn.Module, optimisers: dict[str, torch.optim.Optimizer], state: Checkpoint, clock: _RunClock
    ) -> None:
        state.elapsed_s = clock.elapsed_s()
        rng_states = all_gather_objects(capture_rng_state())  # a collective: every rank comes here
        if not self.is_writer:
            return
        state.model = model.state_dict()
        state.optimisers = {name: optimiser.state_dict() for name, optimiser in optimisers.items()}
        state.rng, state.rank_rng = rng_states[0], rng_states[1:]
        save_checkpoint(state, checkpoint_path(self.run_directory))

    def _stop_agreed(self, step: int, device: torch.device) -> bool:
        """Whether to stop for Ctrl-C before ``step``; distributed ranks must all stop at the same step.

        They agree by an all-reduce, held only at logged steps: each costs a device sync, as a logged loss does.
        """
        if self.world_size == 1:
            return self._stop_requested
        return step % self.config.logging.log_interval == 0 and any_rank(self._stop_requested, device)

    def _seed_rank(self, resume_from: Checkpoint | None) -> None:
        """Give this rank its random stream: the saved one when resuming, else rank 0 the run's seed, others their own.

        Rank 0 keeps the stream seeded by ``seed`` (so one process behaves as it always did); rank ``r`` > 0
        draws its dropout and noise from ``rank_seed(seed, r, step)``, distinct from the other ranks'.
        """
        saved = None
        if resume_from is not None:
            saved = resume_from.rng if self.rank == 0 else (resume_from.rank_rng[self.rank - 1:self.rank] or [None])[0]
        if saved:
            restore_rng_state(saved)
        elif self.rank > 0:
            seed_everything(rank_seed(self.config.seed, self.rank, resume_from.step if resume_from else 0))

    def _report(self, model: nn.Module, state: Checkpoint, status: str) -> RunReport:
        items_per_step = self.task.items_per_batch * self.config.optimiser.grad_accum
        return RunReport(
            config=self.config.to_dict(),
            recipe=self.config.to_toml(),
            command="\n".join(state.commands),
            status=status,
            steps=state.step,
            best_step=state.best_step,
            best_val_loss=state.best_val_loss,
            eval_metrics=self.task.eval_metrics(state.best_val_loss) if state.best_val_loss is not None else {},
            wall_time_s=state.elapsed_s,
            items_per_s=state.step * items_per_step / state.training_s if state.training_s > 0 else 0.0,
            items_name=self.task.items_name,
            num_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        )

    @contextlib.contextmanager
    def _stop_on_sigint(self) -> Iterator[None]:
        """While training, the first Ctrl-C asks the loop to save and stop; a second one stops at once."""

        def request_stop(signum: int, frame: FrameType | None) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        # Handlers can only be installed from the main thread (a server thread trains without one), and a
        # process started with SIGINT ignored (a background job, nohup) should keep ignoring it.
        if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            yield
            return
        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class _RunClock:
    """Wall time of the run over all its sessions, and time spent in training steps (for throughput)."""

    def __init__(self, state: Checkpoint) -> None:
        self.state = state
        self.session_start = time.perf_counter()
        self.elapsed_before = state.elapsed_s
        self.span_start = self.session_start
        self.span_start_step = state.step

    def elapsed_s(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.session_start

    def start_training_span(self, step: int) -> None:
        self.span_start, self.span_start_step = time.perf_counter(), step

    def end_training_span(self) -> float:
        """Close the current span of training steps, add it to the run's training time and return it."""
        seconds = time.perf_counter() - self.span_start
        self.state.training_s += seconds
        self.span_start = time.perf_counter()
        return seconds
