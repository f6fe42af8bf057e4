"""Image data: IDX files, user folders, prepared data sets, batches and labels."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aigc_studio.data.images import (
    FASHION_MNIST_CLASSES,
    ImageDataset,
    load_fashion_mnist,
    load_image_folder,
    prepare_image_dataset,
    read_idx,
    resolve_label,
)
from aigc_studio.errors import AigcError


def write_idx(path: Path, array: np.ndarray, *, compress: bool) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_reads_gzip_and_plain_files(tmp_path: Path, compress: bool) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("x.gz" if compress else "x"), array, compress=compress)
    assert np.array_equal(read_idx(path), array)


def test_read_idx_names_a_truncated_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", np.zeros((2, 3), dtype=np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(AigcError, match="truncated"):
        read_idx(path)


def test_fashion_mnist_has_its_ten_classes_and_grey_28px_images(shared_data: Path) -> None:
    image_set = load_fashion_mnist(shared_data / "fashion-mnist", limit=50)
    assert image_set.images.shape == (50, 1, 28, 28) and image_set.images.dtype == np.uint8
    assert image_set.class_names == list(FASHION_MNIST_CLASSES)
    assert set(image_set.labels.tolist()) <= set(range(10))


def make_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (20, 12)) -> Path:
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.mark.parametrize("channels", [1, 3])
def test_user_folder_is_resized_to_squares_with_folder_names_as_classes(tmp_path: Path, channels: int) -> None:
    root = make_folder(tmp_path / "products", {"mug": 3, "lamp": 2})
    image_set = load_image_folder(root, image_size=16, channels=channels)
    assert image_set.images.shape == (5, channels, 16, 16)
    assert image_set.class_names == ["lamp", "mug"]  # sorted
    assert image_set.labels.tolist() == [0, 0, 1, 1, 1]


def test_folder_without_images_is_an_error_that_says_how_to_lay_it_out(tmp_path: Path) -> None:
    (tmp_path / "empty" / "mug").mkdir(parents=True)
    (tmp_path / "empty" / "mug" / "notes.txt").write_text("no images here")
    with pytest.raises(AigcError, match="holds no images.*class_name"):
        load_image_folder(tmp_path / "empty", image_size=16, channels=1)


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "products", {"mug": 2})
    (root / "mug" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(AigcError, match="broken.png"):
        load_image_folder(root, image_size=16, channels=1)


def test_prepared_split_is_stratified_and_batches_are_a_pure_function_of_the_index(fashion_dataset: Path) -> None:
    train, val = ImageDataset(fashion_dataset, "train"), ImageDataset(fashion_dataset, "val")
    assert len(train) + len(val) == 300
    all_labels = torch.cat([train.labels, val.labels])
    for label in range(10):  # stratified: each class gives its own 10% (rounded) to validation
        assert int((val.labels == label).sum()) == round(int((all_labels == label).sum()) * 0.1)
    assert train.images.shape[1:] == (1, 16, 16)
    images, labels = train.get_batch(7, 16, seed=3)
    again, again_labels = train.get_batch(7, 16, seed=3)
    assert images.shape == (16, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert not torch.equal(labels, train.get_batch(8, 16, seed=3)[1])
    # one epoch of batches visits every training image exactly once
    epoch = torch.cat([train.get_batch(i, 1, seed=3)[1] for i in range(len(train))])
    assert torch.equal(epoch.sort().values, train.labels.sort().values)


def test_preparing_into_a_prepared_directory_needs_overwrite(fashion_dataset: Path, shared_data: Path) -> None:
    with pytest.raises(AigcError, match="--overwrite"):
        prepare_image_dataset(shared_data / "fashion-mnist", fashion_dataset, image_size=16, limit=300)


def test_labels_resolve_by_index_or_name_and_unknown_ones_list_the_choices() -> None:
    names = list(FASHION_MNIST_CLASSES)
    assert resolve_label("7", names) == resolve_label("Sneaker", names) == 7
    assert resolve_label(9, names) == names.index("ankle-boot")
    for bad in ("hat", "10", "-1"):
        with pytest.raises(AigcError, match="unknown label .*0 t-shirt"):
            resolve_label(bad, names)
