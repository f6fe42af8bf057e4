"""``run_training``: the whole of ``aigc train`` as one library call (the CLI only parses and prints).

It resolves the configuration (defaults, then the recipe, then flags; or, with ``resume``, the run's saved
configuration, then flags), builds the task for the architecture and hands both to the
:class:`~aigc_studio.training.trainer.Trainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from aigc_studio.errors import AigcError
from aigc_studio.training.checkpoint import Checkpoint, checkpoint_path, load_checkpoint
from aigc_studio.training.config import TrainConfig
from aigc_studio.training.distributed import process_group, read_torchrun_env
from aigc_studio.training.image_tasks import IMAGE_MODELS, ImageTask
from aigc_studio.training.language_model import LanguageModelTask
from aigc_studio.training.tasks import TrainingTask
from aigc_studio.training.trainer import Trainer, TrainResult, check_run_directory


def resolve_config(
    out_directory: str | Path, *, config_path: str | Path | None, overrides: dict[str, Any], saved: dict[str, Any] | None
) -> TrainConfig:
    """The run's configuration: ``saved`` (when resuming) or the recipe or the defaults, then ``overrides``.

    Args:
        out_directory: the run directory (for messages).
        config_path: a recipe TOML file, or None.
        overrides: ``"section.field"`` paths set by flags (see ``config.FLAG_PATHS``); None values are skipped.
        saved: the configuration stored in the run's checkpoint when resuming.

    Raises:
        AigcError: a recipe together with a resume, a recipe problem, a change of the model's shape on resume,
            or a value out of range.
    """
    if saved is None:
        base = TrainConfig.from_toml(config_path) if config_path is not None else TrainConfig()
        config = base.with_overrides(overrides)
    else:
        if config_path is not None:
            raise AigcError(
                "--config cannot be combined with --resume: the run continues with its saved settings; "
                "drop --config (flags such as --max-steps still apply)",
                param="config",
            )
        base = TrainConfig.from_dict(saved, source=f"{out_directory} checkpoint")
        config = base.with_overrides(overrides)
        if config.model != base.model or config.data.block_size != base.data.block_size:
            raise AigcError(
                "the model's shape cannot change when resuming (arch, [model] settings, --block-size); "
                "drop those flags or start a new run with another --out",
                param="resume",
            )
    config.validate()
    return config


def prepare_training(
    out_directory: str | Path,
    *,
    config_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    world_size: int = 1,
) -> tuple[TrainConfig, Checkpoint | None, TrainingTask]:
    """Everything :func:`run_training` checks before training: the config, the checkpoint, the data and the task.

    ``aigc train --nproc`` calls it before starting any process, so that a user error is one line, not one
    per process.

    Args:
        out_directory, config_path, overrides, resume: as for :func:`run_training`.
        world_size: the number of processes the run will have (the global batch must divide among them).

    Returns:
        The resolved config, the checkpoint to resume from (None for a fresh run) and the task.

    Raises:
        AigcError: as :func:`run_training`.
    """
    out_directory = Path(out_directory)
    checkpoint = None
    if resume:
        path = checkpoint_path(out_directory)
        if not path.is_file():
            raise AigcError(f"--resume: no checkpoint at {path}; drop --resume to start a new run", param="resume")
        checkpoint = load_checkpoint(path)
    check_run_directory(out_directory, resuming=resume)
    config = resolve_config(
        out_directory, config_path=config_path, overrides=overrides or {}, saved=checkpoint.config if checkpoint else None
    )
    if config.data.batch_size % world_size:
        raise AigcError(
            f"--batch-size {config.data.batch_size} is the global batch and must divide among the {world_size} "
            f"processes; use a multiple of {world_size}",
            param="batch_size",
        )
    # gpt and lstm read token data sets; vae, gan, diffusion and classifier read `aigc data prepare-images` output
    task = ImageTask.from_config(config) if config.model.arch in IMAGE_MODELS else LanguageModelTask.from_config(config)
    return config, checkpoint, task


def run_training(
    out_directory: str | Path,
    *,
    config_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    command: str = "",
    console: Console | None = None,
) -> TrainResult:
    """Train a model into ``out_directory`` (or continue the run there with ``resume``).

    Args:
        out_directory: the run directory; it ends as a model directory with ``metrics.jsonl``, ``loss.png``
            and ``checkpoint/``.
        config_path: a recipe TOML file (see ``recipes/``).
        overrides: ``"section.field"`` values from flags, applied last.
        resume: continue from ``out_directory/checkpoint/``.
        command: the command line, for the model card.
        console: where progress goes.

    Returns:
        How the run ended.

    Raises:
        AigcError: anything the user can fix: a bad recipe or flag, data not prepared, ``--resume`` without a
            checkpoint, a fresh run into a directory that holds files, inconsistent torchrun variables, a global
            batch size that does not divide among the processes, or a distributed backend that is missing.

    Under torchrun (``WORLD_SIZE`` > 1) every process calls this: each loads the checkpoint when resuming (the
    run directory must be visible to all), joins the process group, trains its shard of every global batch
    and leaves the group however training ends; only rank 0 writes files and prints progress.
    """
    env = read_torchrun_env()
    config, checkpoint, task = prepare_training(
        out_directory, config_path=config_path, overrides=overrides, resume=resume, world_size=env.world_size
    )
    with process_group(env, config.device):
        trainer = Trainer(task, config, out_directory, command=command, console=console, rank=env.rank, world_size=env.world_size)
        return trainer.fit(resume_from=checkpoint)
