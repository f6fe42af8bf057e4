"""``LanguageModelTask``: the GPT and the LSTM trained on a prepared token dataset.

Batches come from :class:`~aigc_studio.data.dataset.TokenDataset` as a pure function of ``(seed, index)``;
the loss is the model's own cross-entropy, which skips ``-100`` targets, so records are trained on
``target <eos>`` only. The finished directory is written by ``models.model_dir.save_pretrained`` with a model
card that states the data (and its sha256), the command, the recipe, the parameters and the measured metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aigc_studio.data.dataset import TokenDataset
from aigc_studio.errors import AigcError
from aigc_studio.models.gpt import GPT, GPTConfig
from aigc_studio.models.lstm import LSTMConfig, LSTMLanguageModel
from aigc_studio.models.model_dir import GenerationConfig, ModelCard, save_pretrained
from aigc_studio.training.config import TrainConfig, checked_model_table
from aigc_studio.training.tasks import RunReport, TrainingTask

# --arch name -> (model class, its config class)
LANGUAGE_MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "gpt": (GPT, GPTConfig),
    "lstm": (LSTMLanguageModel, LSTMConfig),
}
# Config fields that come from elsewhere than the [model] table.
_DERIVED_FIELDS: dict[str, str] = {
    "vocab_size": "the data set's tokenizer",
    "block_size": "[data] block_size (--block-size)",
}


def build_model_config(arch: str, params: dict[str, Any], *, vocab_size: int, block_size: int) -> Any:
    """The architecture's config dataclass from the recipe's ``[model]`` table plus the data's sizes.

    Args:
        arch: a key of :data:`LANGUAGE_MODELS`.
        params: the ``[model]`` table without ``arch``.
        vocab_size: from the data set's tokenizer.
        block_size: the training window, which is also the model's context length.

    Raises:
        AigcError: unknown arch, unknown or derived key, wrong value type, or a value the model rejects.
    """
    if arch not in LANGUAGE_MODELS:
        raise AigcError(f"unknown arch {arch!r}; choose one of: {', '.join(LANGUAGE_MODELS)}", param="arch")
    config_class = LANGUAGE_MODELS[arch][1]
    checked = checked_model_table(config_class, params, arch=arch, derived=_DERIVED_FIELDS)
    return config_class(**checked, vocab_size=vocab_size, block_size=block_size)


class LanguageModelTask(TrainingTask):
    """Train a GPT or an LSTM on a prepared dataset directory.

    Args:
        data_directory: a directory written by ``aigc data prepare``.
        arch: ``"gpt"`` or ``"lstm"``.
        model_params: the ``[model]`` table (fields of the architecture's config, without ``arch``).
        batch_size: sequences per micro-batch.
        block_size: tokens per training window (the model's context length).
        seed: the data-order seed.

    Raises:
        AigcError: the data directory is not a prepared dataset, or the model settings are invalid.
    """

    items_name = "tokens"

    def __init__(
        self, data_directory: str | Path, arch: str, model_params: dict[str, Any], *, batch_size: int, block_size: int, seed: int
    ) -> None:
        self.data_directory = Path(data_directory)
        self.train_data = TokenDataset(self.data_directory, "train")
        self.val_data = TokenDataset(self.data_directory, "val")
        self.tokenizer = self.train_data.tokenizer
        self.arch = arch
        self.model_config = build_model_config(arch, model_params, vocab_size=self.tokenizer.vocab_size, block_size=block_size)
        self.batch_size = batch_size
        self.block_size = block_size
        self.seed = seed

    @classmethod
    def from_config(cls, config: TrainConfig) -> LanguageModelTask:
        """The task a :class:`TrainConfig` describes."""
        return cls(
            config.data.directory,
            config.model.arch,
            config.model.params,
            batch_size=config.data.batch_size,
            block_size=config.data.block_size,
            seed=config.seed,
        )

    def build_model(self) -> nn.Module:
        model_class = LANGUAGE_MODELS[self.arch][0]
        return model_class(self.model_config)

    @property
    def items_per_batch(self) -> int:
        # Real tokens only: padding of records batches is not throughput.
        return self.train_data.tokens_per_batch(self.batch_size, self.block_size)

    def batch(self, index: int, rank: int, world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.train_data.get_batch(index, self.batch_size, self.block_size, self.seed, rank, world_size)

    def eval_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.val_data.iter_eval_batches(self.batch_size, self.block_size)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        input_ids, targets = batch
        _, loss = model(input_ids, targets)
        return loss

    def loss_items(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        # The loss is a mean over target tokens, and records shards hold different numbers of them.
        return (batch[1] != -100).sum()

    def eval_metrics(self, val_loss: float) -> dict[str, float]:
        # Perplexity is exp of the mean per-token cross-entropy (in nats); a diverged run shows inf, not a crash.
        return {"val_perplexity": math.exp(val_loss) if val_loss < 700 else math.inf}

    def save_model(self, model: nn.Module, directory: Path, report: RunReport) -> None:
        """Write the model directory with a card stating the data, the command, the recipe and the metrics."""
        info = self.train_data.info
        save_pretrained(
            model,
            self.tokenizer,
            directory,
            generation_config=GenerationConfig(prompt_format=info["format"], delexicalized_slots=info.get("delexicalized_slots", [])),
            card=ModelCard(
                name=directory.name,
                description=_card_description(self.arch, report),
                data_description=_data_description(self.data_directory, info, self.train_data, self.val_data),
                data_sha256={item["path"]: item["sha256"] for item in [*info["inputs"], *info.get("val_inputs", [])]},
                recipe=report.command,
                num_parameters=report.num_parameters,
                metrics=_card_metrics(report),
                tags=[self.arch, info["format"], f"tokenizer-{info['tokenizer']['kind']}"],
            ),
        )


def _card_description(arch: str, report: RunReport) -> str:
    ending = "stopped early as validation loss stopped improving" if report.status == "early_stopped" else "as planned"
    lines = [
        f"A {arch.upper()} language model trained with AIGC Studio for {report.steps} steps ({ending}); "
        f"these weights are the best by validation loss, from step {report.best_step}.",
        "",
        "Settings of the run (`train_config.toml` beside this card; `aigc train --config` reads it):",
        "",
        "```toml",
        report.recipe.rstrip(),
        "```",
    ]
    return "\n".join(lines)


def _data_description(directory: Path, info: dict[str, Any], train: TokenDataset, val: TokenDataset) -> str:
    inputs = ", ".join(f"`{item['path']}`" for item in info["inputs"])
    if info.get("val_inputs"):
        inputs += " (validation: " + ", ".join(f"`{item['path']}`" for item in info["val_inputs"]) + ")"
    unit = "records" if info["format"] == "records" else "documents"
    return (
        f"Prepared with `aigc data prepare` into `{directory}` from {inputs} ({info['format']} format, "
        f"{info['tokenizer']['kind']} tokenizer of {info['tokenizer']['vocab_size']} tokens). "
        f"Train split: {train.num_tokens:,} tokens ({unit}: {train.num_records:,}); "
        f"validation split: {val.num_tokens:,} tokens ({unit}: {val.num_records:,})."
    )


def _card_metrics(report: RunReport) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if report.best_val_loss is not None:
        metrics["best_val_loss"] = report.best_val_loss
        metrics.update(report.eval_metrics)
        metrics["best_step"] = float(report.best_step or 0)
    metrics["steps"] = float(report.steps)
    metrics["wall_time_s"] = report.wall_time_s
    metrics[f"{report.items_name}_per_s"] = report.items_per_s
    return metrics
