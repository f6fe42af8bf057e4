"""The image models through the one Trainer: model directories, sample grids, resume, recipe errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from aigc_studio.errors import AigcError
from aigc_studio.models.model_dir import load_image_model, load_pretrained
from aigc_studio.training.checkpoint import checkpoint_path, load_checkpoint
from aigc_studio.training.config import TrainConfig
from aigc_studio.training.run import run_training

from .conftest import tiny_overrides


@pytest.mark.parametrize("arch", ["vae", "gan", "diffusion"])
def test_generators_train_into_a_model_directory_with_sample_grids(trained_models: dict[str, Path], arch: str) -> None:
    directory = trained_models[arch]
    loaded = load_image_model(directory)
    assert loaded.class_names[7] == "sneaker" and loaded.model.config.image_size == 16
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == f"aigc-{arch}"
    card = (directory / "README.md").read_text()
    assert "unconditional-image-generation" in card and "best_val_loss" in card
    grids = sorted((directory / "samples").glob("step-*.png"))
    assert [g.name for g in grids] == ["step-000002.png", "step-000004.png"]
    with Image.open(grids[-1]) as grid:  # 10 classes x 8 columns of 16px tiles with 2px padding
        assert grid.size == (8 * 18 + 2, 10 * 18 + 2)


def test_classifier_card_states_its_validation_accuracy(trained_models: dict[str, Path]) -> None:
    card = (trained_models["classifier"] / "README.md").read_text()
    assert "val_accuracy" in card and "image-classification" in card


def test_text_loader_refuses_an_image_model_with_a_pointer(trained_models: dict[str, Path]) -> None:
    with pytest.raises(AigcError, match="image model.*aigc sketch"):
        load_pretrained(trained_models["vae"])


def test_vae_loss_falls_over_a_few_dozen_steps(tmp_path: Path, fashion_dataset: Path) -> None:
    overrides = tiny_overrides("vae", fashion_dataset, **{"schedule.max_steps": 30, "eval.interval": 30,
                                                          "optimiser.lr": 1e-2, "optimiser.weight_decay": 0.0})
    run_training(tmp_path / "run", overrides=overrides)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]


def test_gan_resume_restores_both_optimisers_and_continues_identically(tmp_path: Path, fashion_dataset: Path) -> None:
    # lr_decay_steps pins the schedule, so that the 3-step first session has the 6-step run's learning rates
    overrides = tiny_overrides("gan", fashion_dataset, **{"schedule.max_steps": 6, "schedule.lr_decay_steps": 6,
                                                          "logging.checkpoint_interval": 3, "eval.interval": 3})
    run_training(tmp_path / "straight", overrides=overrides)
    run_training(tmp_path / "resumed", overrides={**overrides, "schedule.max_steps": 3})
    checkpoint = load_checkpoint(checkpoint_path(tmp_path / "resumed"))
    assert set(checkpoint.optimisers) == {"generator", "discriminator"}
    assert all(state["state"] for state in checkpoint.optimisers.values())
    run_training(tmp_path / "resumed", overrides={"schedule.max_steps": 6}, resume=True)
    straight = load_checkpoint(checkpoint_path(tmp_path / "straight")).model
    resumed = load_checkpoint(checkpoint_path(tmp_path / "resumed")).model
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    assert load_file(str(tmp_path / "resumed" / "model.safetensors")).keys() == load_file(
        str(tmp_path / "straight" / "model.safetensors")).keys()


def test_image_arch_on_a_text_data_set_says_to_prepare_images(tmp_path: Path) -> None:
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "dataset.json").write_text(json.dumps({"format": "text"}))
    with pytest.raises(AigcError, match="prepare-images"):
        run_training(tmp_path / "run", overrides=tiny_overrides("vae", tmp_path / "text"))


def test_image_recipe_keys_are_checked_against_the_model(tmp_path: Path, fashion_dataset: Path) -> None:
    with pytest.raises(AigcError, match="unknown key 'n_layer' for arch gan"):
        run_training(tmp_path / "run", overrides=tiny_overrides("gan", fashion_dataset, **{"model.n_layer": 2}))
    with pytest.raises(AigcError, match="image_size is not set in the recipe"):
        run_training(tmp_path / "run", overrides=tiny_overrides("vae", fashion_dataset, **{"model.image_size": 32}))


@pytest.mark.parametrize("name", ["fashion-vae", "fashion-gan", "fashion-diffusion", "fashion-classifier"])
def test_recipes_build_their_models(name: str, fashion_dataset: Path) -> None:
    from aigc_studio.training.image_tasks import ImageTask

    config = TrainConfig.from_toml(Path(__file__).parents[2] / "recipes" / f"{name}.toml")
    config = config.with_overrides({"data.directory": str(fashion_dataset)})
    config.validate()
    assert ImageTask.from_config(config).build_model().num_parameters() > 100_000
