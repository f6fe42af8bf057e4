"""The Trainer: loss goes down, keep-best, early stopping, accumulation, outputs of a run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from aigc_studio.data.dataset import TokenDataset
from aigc_studio.errors import AigcError
from aigc_studio.models.model_dir import load_pretrained
from aigc_studio.training.config import OptimiserConfig, TrainConfig
from aigc_studio.training.run import run_training
from aigc_studio.training.tasks import RunReport, TrainingTask, build_adamw
from aigc_studio.training.trainer import Trainer


class PullTowardsTwoTask(TrainingTask):
    """One weight w, starting at 0; training pulls it to 2 while the validation loss (w - 1)^2 is best at 1.

    So validation improves, peaks when w passes 1, then worsens: what keep-best and early stopping are for.
    """

    items_name = "points"

    def __init__(self) -> None:
        self.batch_indices: list[int] = []
        self.saved_weight: float | None = None
        self.saved_report: RunReport | None = None

    def build_model(self) -> nn.Module:
        model = nn.Linear(1, 1, bias=False)
        nn.init.zeros_(model.weight)
        return model

    @property
    def items_per_batch(self) -> int:
        return 1

    def batch(self, index: int, rank: int, world_size: int) -> torch.Tensor:
        self.batch_indices.append(index)
        return torch.tensor(2.0)

    def eval_batches(self) -> list[torch.Tensor]:
        return [torch.tensor(1.0)]

    def loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return (model.weight.squeeze() - batch) ** 2

    def save_model(self, model: nn.Module, directory: Path, report: RunReport) -> None:
        self.saved_weight = model.weight.item()
        self.saved_report = report


def pull_config(**overrides: object) -> TrainConfig:
    # A flat rate of 0.1 without decay: Adam moves w by about 0.1 per step, so w passes 1 around step 10.
    settings = {
        "data.directory": "unused", "optimiser.lr": 0.1, "optimiser.weight_decay": 0.0, "schedule.min_lr": 0.1,
        "schedule.warmup_steps": 0, "schedule.max_steps": 30, "eval.interval": 2, "logging.log_interval": 2,
        "logging.checkpoint_interval": 100, **overrides,
    }
    return TrainConfig().with_overrides(settings)


def test_keep_best_saves_the_weights_with_the_lowest_val_loss(tmp_path: Path) -> None:
    task = PullTowardsTwoTask()
    result = Trainer(task, pull_config(), tmp_path / "run").fit()
    assert result.status == "finished" and result.step == 30
    val_losses = {row["step"]: row["val_loss"] for row in result_rows(tmp_path / "run") if row["val_loss"] is not None}
    best_step = min(val_losses, key=val_losses.get)
    assert 4 < best_step < 30  # improved, then worsened: the last weights are not the best ones
    assert result.best_step == best_step and result.best_val_loss == pytest.approx(val_losses[best_step])
    assert (task.saved_weight - 1.0) ** 2 == pytest.approx(val_losses[best_step], abs=1e-7)
    assert task.saved_report.best_step == best_step and task.saved_report.items_name == "points"


def test_early_stopping_stops_after_patience_evals_without_improvement(tmp_path: Path) -> None:
    task = PullTowardsTwoTask()
    result = Trainer(task, pull_config(**{"eval.patience": 3}), tmp_path / "run").fit()
    assert result.status == "early_stopped"
    assert result.step == result.best_step + 3 * 2  # three more evaluations, two steps apart
    assert result.step < 30
    assert task.saved_weight is not None  # an early-stopped run still writes its model


def test_gradient_accumulation_draws_consecutive_micro_batches(tmp_path: Path) -> None:
    task = PullTowardsTwoTask()
    Trainer(task, pull_config(**{"optimiser.grad_accum": 3, "schedule.max_steps": 2}), tmp_path / "run").fit()
    assert task.batch_indices == [0, 1, 2, 3, 4, 5]


def test_adamw_decays_matrices_but_not_gains_or_biases() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    optimiser = build_adamw(model, OptimiserConfig(weight_decay=0.1))
    decayed, not_decayed = optimiser.param_groups
    assert decayed["weight_decay"] == 0.1 and [p.dim() for p in decayed["params"]] == [2]
    assert not_decayed["weight_decay"] == 0.0 and [p.dim() for p in not_decayed["params"]] == [1, 1, 1]


def test_fresh_run_into_a_directory_with_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(AigcError, match="already holds files; choose another --out"):
        Trainer(PullTowardsTwoTask(), pull_config(), tmp_path / "run").fit()


def test_gpt_training_reduces_loss_and_leaves_a_complete_run_directory(
    tmp_path: Path, tiny_overrides: dict[str, object], shakespeare_dataset: Path
) -> None:
    out = tmp_path / "run"
    result = run_training(out, overrides={**tiny_overrides, "optimiser.lr": 1e-2}, command="aigc train --test")
    rows = result_rows(out)
    assert rows[0]["train_loss"] - rows[-1]["train_loss"] > 0.5
    val_losses = [row["val_loss"] for row in rows if row["val_loss"] is not None]
    assert len(val_losses) == 4 and val_losses[-1] < val_losses[0]
    assert set(rows[0]) >= {"step", "train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s"}
    assert [row["step"] for row in rows] == list(range(5, 41, 5))
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The run directory is a model directory holding the best weights: they reproduce the best val loss.
    loaded = load_pretrained(out)
    val_data = TokenDataset(shakespeare_dataset, "val")
    with torch.no_grad():
        losses = [loaded.model(inputs, targets)[1] for inputs, targets in list(val_data.iter_eval_batches(8, 32))[:2]]
    assert torch.stack(losses).mean().item() == pytest.approx(result.best_val_loss, abs=1e-5)

    card = (out / "README.md").read_text(encoding="utf-8")
    input_sha256 = json.loads((shakespeare_dataset / "dataset.json").read_text(encoding="utf-8"))["inputs"][0]["sha256"]
    assert input_sha256 in card
    assert "aigc train --test" in card
    assert "best_val_loss" in card and "val_perplexity" in card and "tokens_per_s" in card
    assert "n_embd = 32" in card  # the recipe of the run


def test_lstm_trains_on_records_and_saves_a_records_model(tmp_path: Path, e2e_dataset: Path) -> None:
    overrides = {
        "data.directory": str(e2e_dataset), "model.arch": "lstm", "model.n_embd": 16, "model.hidden_size": 16,
        "model.n_layer": 1, "data.block_size": 64, "data.batch_size": 4, "schedule.max_steps": 6,
        "schedule.warmup_steps": 1, "eval.interval": 3, "eval.steps": 2, "threads": 1,
    }
    result = run_training(tmp_path / "run", overrides=overrides)
    assert result.status == "finished" and result.best_val_loss is not None
    loaded = load_pretrained(tmp_path / "run")
    assert type(loaded.model).__name__ == "LSTMLanguageModel"
    assert loaded.generation_config.prompt_format == "records"


def result_rows(run_directory: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_directory / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
