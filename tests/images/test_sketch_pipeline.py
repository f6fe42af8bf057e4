"""`generate_sketches` and friends: shapes, seeds, interpolation, variations, files, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aigc_studio.errors import AigcError
from aigc_studio.images.pipeline import (
    MAX_SKETCHES,
    generate_sketches,
    interpolate_sketches,
    save_sketches,
    sketch_variations,
)
from aigc_studio.images.sampling import SamplingOptions

FAST = SamplingOptions(steps=3)


def pixels(batch) -> list[np.ndarray]:  # noqa: ANN001
    return [np.asarray(image) for image in batch.images]


@pytest.mark.parametrize("arch", ["vae", "gan", "diffusion"])
def test_sketches_have_the_model_size_and_the_same_seed_gives_the_same_pixels(trained_models: dict[str, Path], arch: str) -> None:
    first = generate_sketches(trained_models[arch], "sneaker", 3, seed=11, options=FAST)
    assert [image.size for image in first.images] == [(16, 16)] * 3 and first.images[0].mode == "L"
    again = generate_sketches(trained_models[arch], 7, 5, seed=11, options=FAST)  # by index, more of them
    assert all(np.array_equal(a, b) for a, b in zip(pixels(first), pixels(again)))
    other = generate_sketches(trained_models[arch], "sneaker", 3, seed=12, options=FAST)
    assert not all(np.array_equal(a, b) for a, b in zip(pixels(first), pixels(other)))
    record = first.sketches[2].record
    assert (record.label, record.label_index, record.seed, record.index, record.model_type) == ("sneaker", 7, 11, 2, f"aigc-{arch}")
    assert len(record.model_sha256) == 64


def test_size_upscales_for_viewing(trained_models: dict[str, Path]) -> None:
    batch = generate_sketches(trained_models["vae"], "bag", 1, seed=0, size=64)
    assert batch.images[0].size == (64, 64) and batch.sketches[0].record.parameters["size"] == 64


def test_interpolation_starts_and_ends_at_the_two_seeds_sketches(trained_models: dict[str, Path]) -> None:
    walk = interpolate_sketches(trained_models["vae"], "dress", 1, 2, 5)
    start = generate_sketches(trained_models["vae"], "dress", 1, seed=1)
    end = generate_sketches(trained_models["vae"], "dress", 1, seed=2)
    assert len(walk.sketches) == 5
    assert np.array_equal(pixels(walk)[0], pixels(start)[0]) and np.array_equal(pixels(walk)[-1], pixels(end)[0])


@pytest.mark.parametrize("arch", ["vae", "diffusion"])
def test_variations_of_a_given_sketch(trained_models: dict[str, Path], arch: str, tmp_path: Path) -> None:
    source = tmp_path / "source.png"
    Image.fromarray(np.full((40, 40), 200, dtype=np.uint8)).save(source)
    batch = sketch_variations(trained_models[arch], source, "coat", 2, seed=3, strength=0.4, options=FAST)
    assert len(batch.images) == 2 and batch.sketches[0].record.mode == "variation"
    assert batch.sketches[0].record.parameters["strength"] == 0.4


def test_gan_has_no_encoder_for_variations(trained_models: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "source.png"
    Image.new("L", (16, 16), 0).save(source)
    with pytest.raises(AigcError, match="no encoder"):
        sketch_variations(trained_models["gan"], source, "coat", 2, seed=3)


def test_save_writes_numbered_pngs_and_a_contact_sheet(trained_models: dict[str, Path], tmp_path: Path) -> None:
    batch = generate_sketches(trained_models["gan"], "bag", 4, seed=1)
    paths = save_sketches(batch, tmp_path / "out")
    assert [p.name for p in paths] == ["000.png", "001.png", "002.png", "003.png", "contact-sheet.png"]
    with Image.open(paths[-1]) as sheet:
        assert sheet.size == (2 * 18 + 2, 2 * 18 + 2)


@pytest.mark.parametrize(("label", "n", "message"), [
    ("hat", 2, "unknown label 'hat'"),
    ("bag", MAX_SKETCHES + 1, f"between 1 and {MAX_SKETCHES}"),
    ("bag", 0, "between 1 and"),
])
def test_bad_requests_are_one_line_errors(trained_models: dict[str, Path], label: str, n: int, message: str) -> None:
    with pytest.raises(AigcError, match=message):
        generate_sketches(trained_models["vae"], label, n, seed=0)


def test_a_classifier_is_not_a_sketch_model(trained_models: dict[str, Path]) -> None:
    with pytest.raises(AigcError, match="classifier"):
        generate_sketches(trained_models["classifier"], "bag", 1, seed=0)


def test_unknown_model_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match="not found"):
        generate_sketches(tmp_path / "nowhere", "bag", 1, seed=0)
