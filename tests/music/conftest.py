"""Music fixtures: a few Ryan's Mammoth tunes prepared once, and a tiny LSTM trained on them for a few steps."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from aigc_studio.music.corpus import prepare_music_dataset
from aigc_studio.music.originality import COPY_LIMIT, INDEX_FILE

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").is_file(),
    reason="fluidsynth or the FluidR3 GM sound font is missing; install them with `make audio-tools`")


@pytest.fixture(scope="session")
def music_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 normalised tunes from Ryan's Mammoth Collection (one ABC file each, so reading is quick)."""
    out = tmp_path_factory.mktemp("music") / "data"
    prepare_music_dataset(out, collections=["ryans"], limit=8, val_fraction=0.25)
    return out


@pytest.fixture(scope="session")
def music_model(tmp_path_factory: pytest.TempPathFactory, music_dataset: Path) -> Path:
    """A 1-layer LSTM of width 16 trained 6 steps on ``music_dataset``, with the data's copy index beside it."""
    from aigc_studio.training.run import run_training

    out = tmp_path_factory.mktemp("music-model") / "lstm"
    overrides = {"data.directory": str(music_dataset), "model.arch": "lstm", "model.n_layer": 1, "model.n_embd": 16,
                 "model.hidden_size": 16, "data.block_size": 64, "data.batch_size": 4, "schedule.max_steps": 6,
                 "schedule.warmup_steps": 1, "eval.interval": 6, "eval.steps": 1, "logging.log_interval": 3,
                 "logging.checkpoint_interval": 6}
    run_training(out, overrides=overrides, console=Console(file=io.StringIO()))
    name = INDEX_FILE.format(n=COPY_LIMIT)
    shutil.copy(music_dataset / name, out / name)
    return out
