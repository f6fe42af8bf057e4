"""``run_training``: the whole of ``aigc train`` as one library call (the CLI only parses and prints).

It resolves the configuration (defaults, then the recipe, then flags; or, with ``resume``, the run's saved
configuration, then flags), builds the task for the architecture and hands both to the
:class:`~aigc_studio.training.trainer.Trainer`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console

from aigc_studio.errors import AigcError
from aigc_studio.training.checkpoint import checkpoint_path, load_checkpoint
from aigc_studio.training.config import TrainConfig
from aigc_studio.training.language_model import LanguageModelTask
from aigc_studio.training.trainer import Trainer, TrainResult


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
            checkpoint, a fresh run into a directory that holds files, distributed launch (not supported yet).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        raise AigcError(f"distributed training (WORLD_SIZE={world_size}) is not supported yet; run one process")
    out_directory = Path(out_directory)
    checkpoint = None
    if resume:
        path = checkpoint_path(out_directory)
        if not path.is_file():
            raise AigcError(f"--resume: no checkpoint at {path}; drop --resume to start a new run", param="resume")
        checkpoint = load_checkpoint(path)
    config = resolve_config(
        out_directory, config_path=config_path, overrides=overrides or {}, saved=checkpoint.config if checkpoint else None
    )
    task = LanguageModelTask.from_config(config)
    trainer = Trainer(task, config, out_directory, command=command, console=console)
    return trainer.fit(resume_from=checkpoint)
