"""Training checkpoints: everything needed to continue a run exactly where it stopped, in one atomic file.

A checkpoint holds the step, the model and optimiser states, the best weights so far with their val loss,
the early-stopping counter, the metrics history and the random-number generator states (torch, CUDA,
numpy, Python: dropout draws from them). The learning-rate schedule and the data order are pure functions of
the step, so the step restores both. The file is written through :func:`aigc_studio.fileio.atomic_write_with`
(temp file, fsync, rename): a kill at any moment leaves the previous checkpoint or the new one, never half.
It is read with ``torch.load(weights_only=True)``, so a checkpoint can never run code, and therefore holds
only tensors and plain Python values.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_with

CHECKPOINT_DIRECTORY = "checkpoint"
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT_VERSION = 1


def checkpoint_path(run_directory: str | Path) -> Path:
    """Where the checkpoint of the run in ``run_directory`` lives."""
    return Path(run_directory) / CHECKPOINT_DIRECTORY / CHECKPOINT_FILE


@dataclass
class Checkpoint:
    """The state of a run after ``step`` completed optimiser steps.

    Attributes:
        step: completed optimiser steps.
        config: the run's ``TrainConfig.to_dict()``.
        model: the model's ``state_dict``.
        optimisers: each optimiser's ``state_dict`` by the name the task gave it.
        best_model: the ``state_dict`` with the lowest val loss so far (None before the first evaluation).
        best_val_loss: that loss (None before the first evaluation).
        best_step: the step it was measured at.
        evals_since_best: validation passes since the last improvement (early stopping counts these).
        elapsed_s: wall time of the run so far, over all resumed sessions.
        training_s: the part of it spent in training steps (throughput is measured on this).
        metrics: the rows of ``metrics.jsonl`` so far.
        commands: the command line of every session of the run (the first started it, the others resumed it).
        rng: the random-number generator states, from :func:`capture_rng_state` (rank 0's in a distributed run).
        rank_rng: the states of ranks 1, 2, ... of a distributed run (each rank draws its own dropout and
            noise); a rank the list lacks (the run resumes on more processes) starts a fresh seeded stream.
    """

    step: int
    config: dict[str, Any]
    model: dict[str, torch.Tensor]
    optimisers: dict[str, dict[str, Any]]
    best_model: dict[str, torch.Tensor] | None = None
    best_val_loss: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    elapsed_s: float = 0.0
    training_s: float = 0.0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    rng: dict[str, Any] = field(default_factory=dict)
    rank_rng: list[dict[str, Any]] = field(default_factory=list)


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Atomically write ``checkpoint`` to ``path`` (directories are created)."""
    payload = {"format_version": CHECKPOINT_FORMAT_VERSION, **checkpoint.__dict__}
    return atomic_write_with(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`, on the CPU, without executing any code.

    Raises:
        AigcError: the file is missing, unreadable, or not a checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise AigcError(f"no checkpoint at {path}; start a new run without --resume")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise AigcError(f"cannot read checkpoint {path} ({error}); start a new run without --resume") from None
    if not isinstance(payload, dict) or payload.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise AigcError(f"{path} is not a checkpoint of this version of AIGC Studio; start a new run without --resume")
    payload.pop("format_version")
    return Checkpoint(**payload)


def capture_rng_state() -> dict[str, Any]:
    """Every global random-number generator's state, as tensors and plain values (``weights_only``-safe)."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the generator states captured by :func:`capture_rng_state`."""
    python_version, python_internal, python_gauss = state["python"]
    random.setstate((python_version, tuple(python_internal), python_gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    # A run resumed on a machine without CUDA (or with fewer GPUs) keeps what it can; CPU runs never use it.
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
