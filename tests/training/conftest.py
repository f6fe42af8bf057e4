"""Tiny prepared data sets and a tiny-model run configuration shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigc_studio.data.prepare import PrepareConfig, prepare_dataset

# A 2-layer, 32-wide GPT on 32-character windows: a training step takes milliseconds on one thread.
TINY_RUN_OVERRIDES: dict[str, object] = {
    "model.arch": "gpt",
    "model.n_layer": 2,
    "model.n_head": 2,
    "model.n_embd": 32,
    "data.block_size": 32,
    "data.batch_size": 8,
    "schedule.max_steps": 40,
    "schedule.warmup_steps": 4,
    "eval.interval": 10,
    "eval.steps": 2,
    "logging.log_interval": 5,
    "logging.checkpoint_interval": 10,
    "threads": 1,
}


@pytest.fixture(scope="session")
def shakespeare_dataset(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The first 20,000 characters of Tiny Shakespeare, prepared as a character-level text data set."""
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20_000]
    work = tmp_path_factory.mktemp("shakespeare")
    (work / "tiny.txt").write_text(text, encoding="utf-8")
    prepare_dataset([work / "tiny.txt"], work / "dataset", PrepareConfig(tokenizer="char"))
    return work / "dataset"


@pytest.fixture(scope="session")
def e2e_dataset(tmp_path_factory: pytest.TempPathFactory, e2e_slice: Path) -> Path:
    """400 E2E rows prepared as conditional records (mr -> ref) with a character tokenizer."""
    out = tmp_path_factory.mktemp("e2e-records") / "dataset"
    prepare_dataset([e2e_slice], out, PrepareConfig(source_column="mr", target_column="ref", tokenizer="char"))
    return out


@pytest.fixture
def tiny_overrides(shakespeare_dataset: Path) -> dict[str, object]:
    """Settings of a 40-step tiny GPT run on the Shakespeare slice (tests add or change entries)."""
    return {**TINY_RUN_OVERRIDES, "data.directory": str(shakespeare_dataset)}
