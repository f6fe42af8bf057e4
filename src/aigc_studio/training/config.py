"""``TrainConfig``: every setting of a training run, grouped as in a recipe file, with defaults.

A recipe is a TOML file whose top-level keys and tables mirror these dataclasses::

    seed = 1337
    [data]       directory, batch_size, block_size
    [model]      arch, then the model's own hyper-parameters (fields of GPTConfig / LSTMConfig, or for the
                 image archs vae, gan, diffusion, classifier: VAEConfig / GANConfig / DiffusionConfig / ClassifierConfig)
    [optimiser]  lr, weight_decay, beta1, beta2, grad_clip, grad_accum
    [schedule]   max_steps, warmup_steps, lr_decay_steps, min_lr
    [eval]       interval, steps, patience
    [logging]    log_interval, checkpoint_interval

Unknown keys are errors that name the key and list the valid ones, so a typo never silently trains with a
default. Command-line flags are applied on top with :meth:`TrainConfig.with_overrides` (flags win).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigc_studio.errors import AigcError
from aigc_studio.fileio import require_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

DEVICES: tuple[str, ...] = ("cpu", "cuda", "auto")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


@dataclass
class DataConfig:
    """Where the prepared data set is and how batches are cut from it."""

    directory: str = ""  # a directory written by `aigc data prepare`; usually given as --data
    batch_size: int = 12  # sequences per micro-batch (the global batch, whatever the number of processes)
    block_size: int = 64  # tokens per training window (also the GPT's context length)


@dataclass
class ModelConfig:
    """Which architecture to train; ``params`` are its own config fields (``GPTConfig``, ``LSTMConfig``).

    ``vocab_size`` is never set here: it comes from the data set's tokenizer.
    """

    arch: str = "gpt"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimiserConfig:
    """AdamW settings (nanoGPT's defaults unless noted)."""

    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    weight_decay: float = 0.1  # applied to 2-D weights only (matmuls, embeddings), never to norms or biases
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    grad_accum: int = 1  # micro-batches summed per optimiser step (larger effective batch, same memory)


@dataclass
class ScheduleConfig:
    """How long to train and how the learning rate moves: linear warm-up, then cosine decay to ``min_lr``."""

    max_steps: int = 2000  # optimiser steps
    warmup_steps: int = 100
    lr_decay_steps: int = 0  # the step where the cosine reaches min_lr; 0 means max_steps (as nanoGPT advises)
    min_lr: float = 1e-4  # about lr / 10, per Chinchilla

    @property
    def decay_steps(self) -> int:
        """The step where the cosine reaches ``min_lr``."""
        return self.lr_decay_steps or self.max_steps


@dataclass
class EvalConfig:
    """Validation: how often, how much, and when to give up."""

    interval: int = 250  # optimiser steps between validation passes
    steps: int = 20  # validation batches per pass (the same ones every time, so passes compare)
    patience: int = 0  # stop after this many passes without a new best val loss; 0 never stops early


@dataclass
class LoggingConfig:
    """What the run writes while it goes."""

    log_interval: int = 10  # steps between lines of metrics.jsonl
    checkpoint_interval: int = 250  # steps between checkpoints (Ctrl-C and the end of the run also save one)


# The flags of `aigc train` that set a field, as "section.field" paths; "model.*" paths go into params.
FLAG_PATHS: dict[str, str] = {
    "data": "data.directory",
    "arch": "model.arch",
    "n_layer": "model.n_layer",
    "n_head": "model.n_head",
    "n_embd": "model.n_embd",
    "dropout": "model.dropout",
    "block_size": "data.block_size",
    "batch_size": "data.batch_size",
    "grad_accum": "optimiser.grad_accum",
    "lr": "optimiser.lr",
    "weight_decay": "optimiser.weight_decay",
    "min_lr": "schedule.min_lr",
    "warmup_steps": "schedule.warmup_steps",
    "max_steps": "schedule.max_steps",
    "eval_interval": "eval.interval",
    "eval_steps": "eval.steps",
    "patience": "eval.patience",
    "log_interval": "logging.log_interval",
    "checkpoint_interval": "logging.checkpoint_interval",
    "seed": "seed",
    "device": "device",
    "bf16": "precision",
    "threads": "threads",
}


@dataclass
class TrainConfig:
    """All settings of one training run; ``from_toml`` reads a recipe, ``with_overrides`` applies flags."""

    seed: int = 1337  # seeds the weights, dropout and the data order (batches are a function of seed and step)
    device: str = "cpu"  # "cpu", "cuda" or "auto" (cuda when available)
    precision: str = "fp32"  # "bf16": autocast matmuls to bf16 (CUDA, or CPUs with AMX/AVX-512 bf16); weights stay fp32
    threads: int = 0  # torch CPU threads; 0 leaves torch's default
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read a recipe file.

        Raises:
            AigcError: the file is missing or not valid TOML, a key is unknown (the message lists the valid
                keys) or a value has the wrong type.
        """
        path = require_file(path, "recipe file")
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise AigcError(f"recipe {path} is not valid TOML ({error}); fix the file") from None
        return cls.from_dict(table, source=str(path))

    @classmethod
    def from_dict(cls, table: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build a config from nested dicts shaped like the recipe (also how checkpoints store it).

        Raises:
            AigcError: unknown key or wrong value type; the message names ``source`` and the key.
        """
        config = cls()
        scalar_names = [f.name for f in dataclasses.fields(cls) if f.name not in ("model", *_SECTIONS)]
        for key, value in table.items():
            if key == "model":
                if not isinstance(value, dict):
                    raise AigcError(f"{source}: 'model' must be a table ([model]); got {value!r}")
                # Models are checked against their own config class once the architecture is known.
                params = dict(value)
                config.model = ModelConfig(arch=str(params.pop("arch", config.model.arch)), params=params)
            elif key in _SECTIONS:
                if not isinstance(value, dict):
                    raise AigcError(f"{source}: '{key}' must be a table ([{key}]); got {value!r}")
                section = getattr(config, key)
                for name, item in value.items():
                    _set_field(section, name, item, where=f"{source}: [{key}]")
            elif key in scalar_names:
                _set_field(config, key, value, where=source)
            else:
                tables = [f"[{f.name}]" for f in dataclasses.fields(cls) if f.name in ("model", *_SECTIONS)]
                valid = ", ".join(scalar_names + tables)
                raise AigcError(f"{source}: unknown key {key!r}; valid top-level keys and tables are: {valid}", param=key)
        return config

    def to_dict(self) -> dict[str, Any]:
        """Nested dicts of plain values, the shape ``from_dict`` reads (``[model]`` holds arch and params)."""
        table = dataclasses.asdict(self)
        model = table["model"]
        table["model"] = {"arch": model["arch"], **model["params"]}
        return table

    def to_toml(self) -> str:
        """This config as a recipe file that ``from_toml`` reads back unchanged."""
        table = self.to_dict()
        lines = [f"{key} = {_toml_value(value)}" for key, value in table.items() if not isinstance(value, dict)]
        for key, value in table.items():
            if isinstance(value, dict):
                lines.append(f"\n[{key}]")
                lines.extend(f"{name} = {_toml_value(item)}" for name, item in value.items())
        return "\n".join(lines) + "\n"

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """Return a copy with ``"section.field"`` paths (see :data:`FLAG_PATHS`) set; ``None`` values are skipped.

        Raises:
            AigcError: a path names no field.
        """
        config = copy.deepcopy(self)
        for path, value in overrides.items():
            if value is None:
                continue
            section_name, _, name = path.rpartition(".")
            if section_name == "model" and name == "arch":
                config.model.arch = str(value)
            elif section_name == "model":
                config.model.params[name] = value
            else:
                target = getattr(config, section_name) if section_name else config
                _set_field(target, name, value, where="override")
        return config

    def validate(self) -> None:
        """Check ranges, so that a bad value fails before any work starts.

        Raises:
            AigcError: naming the setting, its flag, the value and the allowed range.
        """
        positive = {
            "data.batch_size": self.data.batch_size,
            "data.block_size": self.data.block_size,
            "optimiser.grad_accum": self.optimiser.grad_accum,
            "optimiser.lr": self.optimiser.lr,
            "schedule.max_steps": self.schedule.max_steps,
            "eval.interval": self.eval.interval,
            "eval.steps": self.eval.steps,
            "logging.log_interval": self.logging.log_interval,
            "logging.checkpoint_interval": self.logging.checkpoint_interval,
        }
        for path, value in positive.items():
            if value <= 0:
                raise AigcError(f"{path} must be > 0, got {value}; {_how_to_set(path)}", param=_flag_of(path))
        non_negative = {
            "optimiser.weight_decay": self.optimiser.weight_decay,
            "optimiser.grad_clip": self.optimiser.grad_clip,
            "schedule.warmup_steps": self.schedule.warmup_steps,
            "schedule.lr_decay_steps": self.schedule.lr_decay_steps,
            "schedule.min_lr": self.schedule.min_lr,
            "eval.patience": self.eval.patience,
            "threads": self.threads,
        }
        for path, value in non_negative.items():
            if value < 0:
                raise AigcError(f"{path} must be >= 0, got {value}; {_how_to_set(path)}", param=_flag_of(path))
        for path, value in {"optimiser.beta1": self.optimiser.beta1, "optimiser.beta2": self.optimiser.beta2}.items():
            if not 0.0 <= value < 1.0:
                raise AigcError(f"{path} must be in [0, 1), got {value}; {_how_to_set(path)}", param=_flag_of(path))
        if self.schedule.min_lr > self.optimiser.lr:
            raise AigcError(
                f"schedule.min_lr ({self.schedule.min_lr}) is above optimiser.lr ({self.optimiser.lr}); "
                "lower --min-lr or raise --lr",
                param="min_lr",
            )
        if self.schedule.warmup_steps >= self.schedule.decay_steps:
            raise AigcError(
                f"schedule.warmup_steps ({self.schedule.warmup_steps}) must be below the decay end "
                f"({self.schedule.decay_steps} steps); lower --warmup-steps or raise --max-steps",
                param="warmup_steps",
            )
        if self.device not in DEVICES:
            raise AigcError(f"unknown device {self.device!r}; choose one of: {', '.join(DEVICES)}", param="device")
        if self.precision not in PRECISIONS:
            raise AigcError(f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}", param="precision")
        if not self.data.directory:
            raise AigcError("no data directory given; pass --data DIR (a directory written by `aigc data prepare`)", param="data")


_SECTIONS: tuple[str, ...] = ("data", "optimiser", "schedule", "eval", "logging")


def _set_field(target: Any, name: str, value: Any, *, where: str) -> None:
    fields = [f.name for f in dataclasses.fields(target) if f.name not in ("model", *_SECTIONS)]
    if name not in fields:
        raise AigcError(f"{where}: unknown key {name!r}; valid keys are: {', '.join(fields)}", param=name)
    setattr(target, name, check_value_type(value, getattr(type(target)(), name), name=name, where=where))


def checked_model_table(config_class: type, params: dict[str, Any], *, arch: str, derived: dict[str, str]) -> dict[str, Any]:
    """The recipe's ``[model]`` values for ``config_class`` (a dataclass), each checked against its default's type.

    Args:
        config_class: the architecture's config dataclass.
        params: the ``[model]`` table without ``arch``.
        arch: the architecture's name, for the messages.
        derived: fields the data set sets, never the recipe, and where each comes from (for the message).

    Raises:
        AigcError: a derived or unknown key, or a value of the wrong type.
    """
    defaults = config_class()
    settable = [f.name for f in dataclasses.fields(config_class) if f.name not in derived]
    checked = {}
    for name, value in params.items():
        if name in derived:
            raise AigcError(f"[model] {name} is not set in the recipe's [model] table; it comes from {derived[name]}", param=name)
        if name not in settable:
            raise AigcError(f"[model] has unknown key {name!r} for arch {arch}; valid keys are: {', '.join(settable)}", param=name)
        checked[name] = check_value_type(value, getattr(defaults, name), name=name, where=f"[model] ({arch})")
    return checked


def check_value_type(value: Any, default: Any, *, name: str, where: str) -> Any:
    """Return ``value`` if it has the type of ``default`` (an int is accepted, as a float, for a float).

    Args:
        value: what the recipe or a flag gave.
        default: the field's default, whose type is expected (``None`` accepts anything).
        name: the key, for the message.
        where: the file and table, for the message.

    Raises:
        AigcError: the types differ.
    """
    if default is None:
        return value
    expected = type(default)
    # TOML users write 1 for 1.0 as often as not; an int where a float is expected is fine, not the reverse.
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise AigcError(f"{where}: {name} must be {expected.__name__}, got {value!r} ({type(value).__name__})", param=name)
    return value


def _flag_of(path: str) -> str:
    for flag, flag_path in FLAG_PATHS.items():
        if flag_path == path:
            return flag
    return path


def _how_to_set(path: str) -> str:
    section, _, name = path.rpartition(".")
    where = f"[{section}] {name}" if section else name
    flag = _flag_of(path)
    if flag != path:
        return f"set --{flag.replace('_', '-')} (or {where} in the recipe)"
    return f"set {where} in the recipe"


def _toml_value(value: Any) -> str:
    # JSON and TOML agree on strings, finite numbers and booleans, which is all a TrainConfig holds.
    return json.dumps(value, ensure_ascii=False)
