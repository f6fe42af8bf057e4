"""Tiny image data sets and tiny trained image models shared by the image tests (16x16, a few steps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigc_studio.data.images import prepare_image_dataset
from aigc_studio.training import image_tasks
from aigc_studio.training.run import run_training

# A few steps of batch 16 on 16x16 crops: each model trains in about a second on one thread.
TINY_RUN: dict[str, object] = {
    "data.batch_size": 16,
    "schedule.max_steps": 4,
    "schedule.warmup_steps": 1,
    "eval.interval": 2,
    "eval.steps": 1,
    "logging.log_interval": 1,
    "logging.checkpoint_interval": 2,
    "threads": 1,
}
TINY_MODELS: dict[str, dict[str, object]] = {
    "vae": {"model.base_channels": 8, "model.hidden_dim": 16, "model.latent_dim": 4},
    "gan": {"model.g_channels": 8, "model.d_channels": 8, "model.latent_dim": 8},
    "diffusion": {"model.base_channels": 8, "model.channel_mults": [1, 2], "model.num_train_timesteps": 50},
    "classifier": {"model.base_channels": 8, "model.feature_dim": 16},
}


def tiny_overrides(arch: str, data: Path, **extra: object) -> dict[str, object]:
    """Settings of a 4-step run of a tiny ``arch`` on ``data`` (``extra`` keys as "section.field")."""
    return {**TINY_RUN, **TINY_MODELS[arch], "model.arch": arch, "data.directory": str(data), **extra}


@pytest.fixture(scope="session")
def fashion_dataset(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The first 300 Fashion-MNIST images at 16x16, prepared (270 train, 30 validation)."""
    out = tmp_path_factory.mktemp("fashion") / "dataset"
    prepare_image_dataset(shared_data / "fashion-mnist", out, image_size=16, limit=300)
    return out


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory, fashion_dataset: Path) -> dict[str, Path]:
    """A tiny VAE, GAN, diffusion model and classifier trained 4 steps each: arch -> model directory."""
    root = tmp_path_factory.mktemp("models")
    directories = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_tasks, "GRID_DIFFUSION_STEPS", 2)  # the grids' content is not under test here
        for arch in TINY_MODELS:
            result = run_training(root / arch, overrides=tiny_overrides(arch, fashion_dataset))
            assert result.status == "finished"
            directories[arch] = root / arch
    return directories
