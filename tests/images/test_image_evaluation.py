"""Domain FID/KID, class accuracy, diversity, memorisation and the HTML report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aigc_studio.data.images import ImageDataset
from aigc_studio.errors import AigcError
from aigc_studio.evaluation.images import (
    evaluate_images,
    frechet_distance,
    kernel_inception_distance,
    nearest_neighbour_rms,
    write_image_report,
)
from aigc_studio.images.pipeline import generate_sketches, save_sketches


def features(n: int = 300, dim: int = 8, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, (n, dim))


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_shift() -> None:
    a = features()
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, features(shift=1.0, seed=1)) == pytest.approx(8.0, rel=0.25)  # ||mu diff||^2 = 8


def test_kid_is_about_zero_for_the_same_distribution_and_positive_for_a_shifted_one() -> None:
    same = kernel_inception_distance(features(seed=0), features(seed=1), subset_size=200)
    shifted = kernel_inception_distance(features(seed=0), features(shift=1.0, seed=1), subset_size=200)
    assert abs(same) < 0.05 and shifted > 10 * abs(same)


def test_nearest_neighbour_distance_is_zero_for_copies() -> None:
    images = np.random.default_rng(0).integers(0, 255, (5, 1, 8, 8), dtype=np.uint8)
    assert np.allclose(nearest_neighbour_rms(images[:2], images), 0.0)
    assert (nearest_neighbour_rms(255 - images[:2], images[2:]) > 0).all()


def test_evaluation_of_generated_sketches_writes_metrics_and_an_html_report(
    trained_models: dict[str, Path], fashion_dataset: Path, tmp_path: Path
) -> None:
    for label in ("bag", "trouser"):
        save_sketches(generate_sketches(trained_models["vae"], label, 4, seed=1), tmp_path / "gen" / label)
    report, fake = evaluate_images(tmp_path / "gen", fashion_dataset, classifier=trained_models["classifier"])
    assert report.counts["generated"] == 8 and set(report.per_class) == {"bag", "trouser"}
    assert {"fid", "kid", "class_accuracy", "diversity", "nn_distance", "near_copies", "real_nn_distance"} <= set(report.metrics)
    assert 0 <= report.metrics["class_accuracy"] <= 1 and report.metrics["fid"] > 0
    html_path, json_path = tmp_path / "report.html", tmp_path / "report.json"
    write_image_report(report, fake, html_path=html_path, json_path=json_path)
    page = html_path.read_text()
    assert "<h3>bag</h3>" in page and "data:image/png;base64," in page and "domain metrics" in page


def test_training_images_submitted_as_generated_are_flagged_as_copies(
    trained_models: dict[str, Path], fashion_dataset: Path, tmp_path: Path
) -> None:
    from PIL import Image

    train = ImageDataset(fashion_dataset, "train")
    for i in range(6):
        folder = tmp_path / "copies" / train.class_names[int(train.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(train.images[i, 0].numpy()).save(folder / f"{i}.png")
    report, _ = evaluate_images(tmp_path / "copies", fashion_dataset, classifier=trained_models["classifier"])
    assert report.metrics["near_copies"] == 1.0 and report.metrics["nn_distance"] == pytest.approx(0.0, abs=1e-4)


def test_empty_generated_folder_and_a_generator_as_judge_are_errors(
    trained_models: dict[str, Path], fashion_dataset: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(AigcError, match="holds no images"):
        evaluate_images(tmp_path / "empty", fashion_dataset, classifier=trained_models["classifier"])
    with pytest.raises(AigcError, match="not a classifier"):
        evaluate_images(tmp_path / "empty", fashion_dataset, classifier=trained_models["vae"])
