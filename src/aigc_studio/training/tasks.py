"""What the Trainer trains: the :class:`TrainingTask` interface, shared by every model kind.

The :class:`~aigc_studio.training.trainer.Trainer` owns the loop (schedule, evaluation, keep-best, early
stopping, checkpoints, progress, metrics); a task owns everything specific to one kind of model: how to build
it, where its batches come from, what its loss is, and how its finished model directory is written. A
language model needs only the abstract methods. A task with several networks and optimisers (a GAN: generator
and discriminator) overrides :meth:`TrainingTask.configure_optimisers` and :meth:`TrainingTask.train_step`;
the Trainer checkpoints every optimiser it is handed and sets the scheduled learning rate on all of them.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aigc_studio.training.config import OptimiserConfig
from aigc_studio.training.distributed import all_reduce_sum, skip_gradient_sync


@dataclass
class StepContext:
    """What one optimiser step needs to know besides the model and its optimisers.

    Attributes:
        step: the 0-based optimiser step being taken.
        grad_accum: micro-batches per step; micro-batch ``i`` of step ``s`` is batch index ``s * grad_accum + i``.
        grad_clip: max global gradient norm (0: no clipping).
        device: where the model lives.
        rank, world_size: this process and the number of processes (each gets its share of a global batch).
        autocast: returns the mixed-precision context for forward passes (a no-op in fp32).
        networks: the trained networks to run training forward passes through, by the names of
            :meth:`TrainingTask.trained_networks`: DDP wrappers when distributed (their backward passes
            average the gradients over ranks), else the networks themselves.
    """

    step: int
    grad_accum: int
    grad_clip: float
    device: torch.device
    rank: int = 0
    world_size: int = 1
    autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def network(self, name: str, fallback: nn.Module) -> nn.Module:
        """The network ``name`` to call for a training forward pass (``fallback``, the plain one, if not wrapped)."""
        return self.networks.get(name, fallback)

    def accumulate(self, micro_step: int, *names: str) -> AbstractContextManager[None]:
        """Around the forward and backward of micro-batch ``micro_step``: keep gradients local on all but the last.

        Only the last micro-batch's backward all-reduces (the sum of all of them), as DDP's ``no_sync`` intends.
        ``names`` limits this to some networks (default: all).
        """
        chosen = {name: self.networks[name] for name in names if name in self.networks} if names else self.networks
        return skip_gradient_sync(chosen, skip=micro_step < self.grad_accum - 1)


@dataclass
class RunReport:
    """How a run went, handed to :meth:`TrainingTask.save_model` for the model card.

    Attributes:
        config: the run's ``TrainConfig.to_dict()``.
        recipe: the same config as a TOML recipe (what ``--config`` would read to repeat the run).
        command: the command lines of the run, one per line (the first started it, any others resumed it).
        status: ``"finished"``, ``"early_stopped"`` or ``"interrupted"``.
        steps: completed optimiser steps.
        best_step: the step of the saved (best) weights.
        best_val_loss: their validation loss.
        eval_metrics: the task's extra validation metrics at the best step (e.g. perplexity).
        wall_time_s: wall-clock seconds of the whole run, over all resumed sessions.
        items_per_s: training throughput (``items_name`` per second, evaluation excluded).
        items_name: the unit of throughput (``"tokens"``, ``"images"``).
        num_parameters: trainable parameters of the model.
    """

    config: dict[str, Any]
    recipe: str
    command: str
    status: str
    steps: int
    best_step: int | None
    best_val_loss: float | None
    eval_metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    items_per_s: float = 0.0
    items_name: str = "items"
    num_parameters: int = 0


class TrainingTask(ABC):
    """One kind of model to train. Subclasses implement the abstract methods; the rest have defaults.

    A batch is whatever the task likes (a tuple of tensors for language models); the Trainer only moves its
    tensors to the device and hands it back to :meth:`loss`.
    """

    items_name: str = "items"  # what throughput counts ("tokens" for language models)

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (the Trainer seeds the RNG first, so this is reproducible)."""

    @property
    @abstractmethod
    def items_per_batch(self) -> int:
        """How many ``items_name`` one micro-batch holds (tokens/s = items per step / seconds per step)."""

    @abstractmethod
    def batch(self, index: int, rank: int, world_size: int) -> Any:
        """Training micro-batch number ``index``: a pure function of ``index`` (and the task's seed).

        That purity is what makes resuming exact: the checkpoint only has to remember the step.
        """

    @abstractmethod
    def eval_batches(self) -> Iterable[Any]:
        """Validation batches in a fixed order (the Trainer takes the first ``eval.steps`` of them)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The scalar loss the model is trained (and validated) on."""

    @abstractmethod
    def save_model(self, model: nn.Module, directory: Path, report: RunReport) -> None:
        """Write the finished model directory (weights, config, model card) into ``directory``."""

    def eval_metrics(self, val_loss: float) -> dict[str, float]:
        """Extra metrics derived from a validation loss (language models add perplexity)."""
        return {}

    def after_evaluation(self, model: nn.Module, step: int, run_directory: Path) -> None:
        """Called on the writing process after each validation pass; image tasks write a sample grid here.

        It must not draw from the global random generators (use a local ``torch.Generator``), so that it never
        changes the training curve. Default: nothing.
        """

    def trained_networks(self, model: nn.Module) -> dict[str, nn.Module]:
        """The networks whose forward passes produce training gradients, by name; DDP wraps each when distributed.

        Default: the whole model as ``"model"``. A GAN names its generator and discriminator, which it calls
        separately (a wrapper around the whole GAN would never see those calls).
        """
        return {"model": model}

    def loss_items(self, batch: Any) -> torch.Tensor | None:
        """How many items the loss of ``batch`` averages over, when that can differ between the ranks' shards.

        Language models count target tokens (records have different lengths): each rank's loss is then weighted
        by its share of the global batch's tokens, so the averaged gradient is exactly that of one process on
        the whole batch. None (the default) means every shard weighs the same.
        """
        return None

    def configure_optimisers(self, model: nn.Module, config: OptimiserConfig) -> dict[str, torch.optim.Optimizer]:
        """The optimisers by name (names key the checkpoint). Default: one AdamW over the whole model."""
        return {"model": build_adamw(model, config)}

    def train_step(
        self, model: nn.Module, optimisers: dict[str, torch.optim.Optimizer], context: StepContext
    ) -> torch.Tensor:
        """One optimiser step; returns the step's mean loss as a detached tensor (no device sync).

        The default accumulates ``grad_accum`` micro-batches, clips the global gradient norm and steps the
        single optimiser. Tasks with several optimisers (GANs) override this. When distributed, the returned
        loss is this rank's share: its mean over the ranks is the global batch's loss.
        """
        (optimiser,) = optimisers.values()
        network = context.network("model", model)
        total_loss = torch.zeros((), device=context.device)
        for micro_step in range(context.grad_accum):
            batch = move_to_device(
                self.batch(context.step * context.grad_accum + micro_step, context.rank, context.world_size),
                context.device,
            )
            with context.accumulate(micro_step):
                with context.autocast():
                    # Dividing here makes the summed gradients those of the mean over all micro-batches.
                    loss = self.loss(network, batch) / context.grad_accum
                if context.world_size > 1:
                    items = self.loss_items(batch)
                    loss = loss * shard_weight(items, context.world_size)
                    if items is not None:
                        # A shard without any target token has a NaN mean and no gradient: it adds nothing.
                        loss = torch.where(items > 0, loss, torch.zeros_like(loss))
                loss.backward()
            total_loss += loss.detach()
        if context.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), context.grad_clip)
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        return total_loss


def shard_weight(items: torch.Tensor | None, world_size: int) -> torch.Tensor | float:
    """``items * world_size / total items over ranks``: this rank's loss weight (1.0 when shards weigh the same).

    DDP averages gradients over ranks; with this weight the average is the gradient of (sum of every rank's
    per-item losses) / (items in the global batch), i.e. one process's mean over the whole batch.
    """
    if items is None:
        return 1.0
    items = items.float()
    return items * world_size / all_reduce_sum(items).clamp_min(1.0)


def build_adamw(model: nn.Module, config: OptimiserConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D weights only (matmuls and embeddings), as nanoGPT does.

    Decaying gains and biases only pulls normalisation scales towards zero, which hurts; Loshchilov & Hutter,
    "Decoupled Weight Decay Regularization" (2019), for AdamW itself.

    Args:
        model: the model whose trainable parameters are optimised.
        config: learning rate, betas and weight decay.

    Returns:
        The optimiser, with two parameter groups (decayed, not decayed).
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in parameters if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in parameters if p.dim() < 2], "weight_decay": 0.0},
    ]
    on_cuda = bool(parameters) and parameters[0].is_cuda
    # The fused CUDA kernel is one launch for all parameters instead of several per tensor.
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=on_cuda or None)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor inside it (tuples, lists and dicts are walked) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    return batch
