"""Shared fixtures: paths to the public data sets in ../shared/data and small deterministic corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AIGC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Tests use tiny models; one thread avoids oversubscribing the two cores when pytest-xdist runs workers.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only public data sets (E2E, AdvertiseGen, BANKING77, Fashion-MNIST, Tiny Shakespeare)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public data sets not found at {SHARED_DATA}; set AIGC_SHARED_DATA to their folder")
    return SHARED_DATA


@pytest.fixture(scope="session")
def e2e_slice(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The first 400 rows of the E2E training set as a CSV (mr, ref): enough to train a few dozen steps."""
    lines = (shared_data / "e2e" / "trainset.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path_factory.mktemp("e2e") / "e2e-slice.csv"
    path.write_text("".join(lines[:401]), encoding="utf-8")
    return path
