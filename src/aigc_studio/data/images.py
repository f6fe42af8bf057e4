"""Image data for the sketch models: Fashion-MNIST IDX files or a folder of the user's own product images.

Two sources, one result (:class:`ImageSet`: ``uint8`` pixels ``(N, C, H, W)``, integer labels, class names):

- a Fashion-MNIST folder holding ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]``
  (read by :func:`read_idx`; the classes are :data:`FASHION_MNIST_CLASSES`);
- a folder of class folders, ``class_name/*.png|jpg|jpeg``, read with Pillow, resized to a square and kept
  grey (1 channel) or colour (3 channels); the class names are the folder names, sorted.

:func:`prepare_image_dataset` writes a prepared data set that ``aigc train --arch vae|gan|diffusion|classifier``
reads::

    dataset.json        kind "images", class names, image size, channels, split sizes, sources and their sha256
    train.safetensors   images (uint8, N x C x H x W) and labels (int64)
    val.safetensors     the held-out split (Fashion-MNIST ships only its training set here: we hold out part)

:class:`ImageDataset` serves batches from it as a pure function of ``(seed, index)`` (so resuming is exact),
scaled to ``[-1, 1]``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_json, atomic_write_with, sha256_file

# Fashion-MNIST's label order (its README), spelled as CLI-friendly names.
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
DATASET_INFO_FILE = "dataset.json"
DATASET_KIND = "images"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
               0x0E: np.dtype(">f8")}


@dataclass
class ImageSet:
    """Images with class labels.

    Attributes:
        images: ``uint8`` array ``(N, C, H, W)``.
        labels: ``int64`` array ``(N,)``, indices into ``class_names``.
        class_names: the label names, in label order.
        sources: the files read, with their sha256 (for the model card's provenance).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    sources: list[dict[str, str]]

    def __len__(self) -> int:
        return len(self.labels)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    Raises:
        AigcError: the file is missing, truncated, or not IDX; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise AigcError(f"IDX file not found: {path}; run `aigc data download fashion-mnist` or check the path")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise AigcError(f"cannot read {path} ({error}); download it again") from None
    # Header: two zero bytes, a dtype code, the number of dimensions, then one big-endian uint32 per dimension.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise AigcError(f"{path} is not an IDX file (bad magic number); download it again")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise AigcError(f"{path} is truncated or damaged: {len(raw)} bytes where its header says {expected}; download it again")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def is_idx_directory(directory: str | Path) -> bool:
    """Whether ``directory`` holds the Fashion-MNIST training images and labels as IDX files."""
    directory = Path(directory)
    return _find_idx(directory, "train-images-idx3-ubyte") is not None and _find_idx(directory, "train-labels-idx1-ubyte") is not None


def load_fashion_mnist(directory: str | Path, *, limit: int | None = None) -> ImageSet:
    """The Fashion-MNIST training set from ``directory`` (``train-images-idx3-ubyte[.gz]`` + labels).

    Args:
        directory: a folder from ``aigc data download fashion-mnist`` (or the shared mirror).
        limit: keep only the first ``limit`` images (tests, quick runs).

    Raises:
        AigcError: a file is missing or damaged, or images and labels disagree in number.
    """
    directory = Path(directory)
    images_path = _find_idx(directory, "train-images-idx3-ubyte")
    labels_path = _find_idx(directory, "train-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise AigcError(f"{directory} does not hold train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]; "
                        "run `aigc data download fashion-mnist --out DIR` and pass that DIR")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise AigcError(f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) do not pair up; download them again")
    if labels.size and (labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES)):
        raise AigcError(f"{labels_path} holds labels outside 0-9; it is not Fashion-MNIST")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return ImageSet(
        images=np.ascontiguousarray(images[:, None, :, :], dtype=np.uint8),
        labels=labels.astype(np.int64),
        class_names=list(FASHION_MNIST_CLASSES),
        sources=[{"path": str(p), "sha256": sha256_file(p)} for p in (images_path, labels_path)],
    )


def load_image_file(path: str | Path, *, image_size: int, channels: int) -> np.ndarray:
    """One image file as ``uint8`` ``(C, size, size)``: converted to grey or RGB, resized with Lanczos.

    Non-square images are padded to a square with their own border colour first, so products keep their shape.

    Raises:
        AigcError: the file cannot be decoded as an image (the message names it).
    """
    path = Path(path)
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise AigcError(f"{path} is not a readable image ({error}); replace or remove that file") from None
    width, height = image.size
    if width != height:
        side = max(width, height)
        corner = image.getpixel((0, 0))
        square = Image.new(image.mode, (side, side), corner)
        square.paste(image, ((side - width) // 2, (side - height) // 2))
        image = square
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1).copy()


def load_image_folder(directory: str | Path, *, image_size: int, channels: int, limit_per_class: int | None = None) -> ImageSet:
    """The user's own images: one sub-folder per class (``class_name/*.png|jpg|jpeg``), sorted by name.

    Args:
        directory: the folder of class folders.
        image_size: the side of the square the images are resized to.
        channels: 1 (grey) or 3 (colour).
        limit_per_class: keep at most this many images of each class (sorted by file name).

    Raises:
        AigcError: the folder is missing, has no class folders or no images, or an image is corrupt.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AigcError(f"image folder not found: {directory}; check the path")
    _check_shape(image_size, channels)
    class_dirs = sorted(path for path in directory.iterdir() if path.is_dir() and not path.name.startswith("."))
    files_by_class = {
        path.name: sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        for path in class_dirs
    }
    files_by_class = {name: files for name, files in files_by_class.items() if files}
    if not files_by_class:
        raise AigcError(f"{directory} holds no images: put them in one sub-folder per class, "
                        f"class_name/*.png|jpg (e.g. {directory}/sneaker/001.png)")
    images, labels = [], []
    for label, (name, files) in enumerate(files_by_class.items()):
        for path in files[:limit_per_class]:
            images.append(load_image_file(path, image_size=image_size, channels=channels))
            labels.append(label)
    return ImageSet(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=list(files_by_class),
        sources=[{"path": str(directory), "sha256": _folder_digest(directory, files_by_class)}],
    )


def _folder_digest(directory: Path, files_by_class: dict[str, list[Path]]) -> str:
    """One sha256 over every image's relative path and content, so a changed folder changes the digest."""
    digest = hashlib.sha256()
    for files in files_by_class.values():
        for path in files:
            digest.update(str(path.relative_to(directory)).encode("utf-8"))
            digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def _check_shape(image_size: int, channels: int) -> None:
    if channels not in (1, 3):
        raise AigcError(f"channels must be 1 (grey) or 3 (colour), got {channels}", param="channels")
    if not 8 <= image_size <= 256 or image_size % 4:
        raise AigcError(f"image size must be a multiple of 4 between 8 and 256, got {image_size}", param="size")


def load_image_source(source: str | Path, *, image_size: int = 28, channels: int = 1, limit: int | None = None) -> ImageSet:
    """Fashion-MNIST IDX files or a folder of class folders, brought to ``image_size`` and ``channels``.

    Raises:
        AigcError: the source is neither, or one of its files is unreadable.
    """
    _check_shape(image_size, channels)
    source = Path(source)
    if is_idx_directory(source):
        image_set = load_fashion_mnist(source, limit=limit)
        if image_size != 28 or channels != 1:
            image_set.images = _convert(image_set.images, image_size, channels)
        return image_set
    image_set = load_image_folder(source, image_size=image_size, channels=channels)
    if limit is not None:
        image_set.images, image_set.labels = image_set.images[:limit], image_set.labels[:limit]
    return image_set


def _convert(images: np.ndarray, image_size: int, channels: int) -> np.ndarray:
    out = []
    for array in images:
        image = Image.fromarray(array[0]).convert("L" if channels == 1 else "RGB")
        image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
        pixels = np.asarray(image, dtype=np.uint8)
        out.append(pixels[None] if channels == 1 else pixels.transpose(2, 0, 1))
    return np.stack(out)


def prepare_image_dataset(
    source: str | Path,
    out: str | Path,
    *,
    image_size: int = 28,
    channels: int = 1,
    val_fraction: float = 0.1,
    seed: int = 1337,
    limit: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Read ``source`` (IDX folder or class folders), split it, and write a prepared image data set to ``out``.

    The split is stratified: each class gives the same share to validation, chosen by ``seed``.

    Returns:
        The ``dataset.json`` written.

    Raises:
        AigcError: bad source or settings, too few images for a validation split, or ``out`` already prepared
            (without ``overwrite``).
    """
    out = Path(out)
    if (out / DATASET_INFO_FILE).exists() and not overwrite:
        raise AigcError(f"{out} already holds a prepared data set; pass --overwrite or choose another --out", param="out")
    if not 0 < val_fraction <= 0.5:
        raise AigcError(f"val fraction must be in (0, 0.5], got {val_fraction}", param="val_fraction")
    image_set = load_image_source(source, image_size=image_size, channels=channels, limit=limit)
    rng = np.random.default_rng(seed)
    val_mask = np.zeros(len(image_set), dtype=bool)
    for label in range(len(image_set.class_names)):
        members = np.flatnonzero(image_set.labels == label)
        take = int(round(len(members) * val_fraction))
        val_mask[rng.permutation(members)[:take]] = True
    if val_mask.all() or not val_mask.any():
        raise AigcError(f"{source}: {len(image_set)} images are too few to hold out {val_fraction:.0%} for validation; "
                        "add images or change --val-fraction", param="val_fraction")
    for split, mask in (("train", ~val_mask), ("val", val_mask)):
        tensors = {"images": torch.from_numpy(np.ascontiguousarray(image_set.images[mask])),
                   "labels": torch.from_numpy(image_set.labels[mask])}
        atomic_write_with(out / f"{split}.safetensors", lambda tmp, t=tensors: save_file(t, str(tmp)))
    counts = np.bincount(image_set.labels[~val_mask], minlength=len(image_set.class_names))
    info = {
        "kind": DATASET_KIND,
        "class_names": image_set.class_names,
        "image_size": image_size,
        "channels": channels,
        "num_train": int((~val_mask).sum()),
        "num_val": int(val_mask.sum()),
        "train_per_class": {name: int(count) for name, count in zip(image_set.class_names, counts)},
        "val_fraction": val_fraction,
        "seed": seed,
        "inputs": image_set.sources,
    }
    atomic_write_json(out / DATASET_INFO_FILE, info)  # last: a directory without it is not a data set
    return info


def read_image_dataset_info(directory: str | Path) -> dict[str, Any]:
    """The ``dataset.json`` of a prepared image data set.

    Raises:
        AigcError: the directory is not a prepared image data set (the message says how to make one).
    """
    directory = Path(directory)
    path = directory / DATASET_INFO_FILE
    how = f"run `aigc data prepare-images SOURCE --out {directory}` first"
    if not path.is_file():
        raise AigcError(f"{directory} is not a prepared image data set (no {DATASET_INFO_FILE}); {how}", param="data")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AigcError(f"{path} is not valid JSON ({error}); {how}") from None
    if not isinstance(info, dict) or info.get("kind") != DATASET_KIND:
        raise AigcError(f"{directory} is a text data set, not an image one; the image architectures need {how}", param="data")
    return info


class ImageDataset:
    """One split of a prepared image data set, held in memory as ``uint8``.

    Args:
        directory: written by :func:`prepare_image_dataset`.
        split: ``"train"`` or ``"val"``.

    Raises:
        AigcError: the data set is missing or damaged.
    """

    def __init__(self, directory: str | Path, split: str) -> None:
        self.directory = Path(directory)
        self.info = read_image_dataset_info(self.directory)
        path = self.directory / f"{split}.safetensors"
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, FileNotFoundError) as error:
            raise AigcError(f"cannot read {path} ({error}); prepare the data set again") from None
        self.images: torch.Tensor = tensors["images"]
        self.labels: torch.Tensor = tensors["labels"]
        self.class_names: list[str] = list(self.info["class_names"])
        self.image_size: int = int(self.info["image_size"])
        self.channels: int = int(self.info["channels"])

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, index: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch ``index``: ``(images in [-1, 1] (B, C, H, W), labels (B,))``, a pure function of its arguments.

        Epoch ``e`` visits the images in the order of a permutation seeded by ``(seed, e)``; batches never
        straddle epochs in a way that depends on anything but ``index``.
        """
        n = len(self)
        positions = torch.arange(index * batch_size, (index + 1) * batch_size)
        picked = torch.empty(batch_size, dtype=torch.long)
        for epoch in positions.div(n, rounding_mode="floor").unique().tolist():
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            in_epoch = positions // n == epoch
            picked[in_epoch] = order[positions[in_epoch] % n]
        return to_model_range(self.images[picked]), self.labels[picked]

    def iter_eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The split in file order, in batches (the same batches every time)."""
        for start in range(0, len(self), batch_size):
            yield to_model_range(self.images[start: start + batch_size]), self.labels[start: start + batch_size]


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` pixels to floats in ``[-1, 1]`` (what every image model reads and writes)."""
    return images.float().div(127.5).sub(1.0)


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """Model-range images ``(B, C, H, W)`` in ``[-1, 1]`` back to ``uint8`` pixels ``(B, C, H, W)``."""
    return images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu().numpy()


def resolve_label(label: str | int, class_names: list[str]) -> int:
    """A label given by index (``"3"``) or by name (``"dress"``, case-insensitive) as its index.

    Raises:
        AigcError: no such class; the message lists the valid names.
    """
    text = str(label).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if 0 <= index < len(class_names):
            return index
    else:
        lowered = [name.lower() for name in class_names]
        if text.lower() in lowered:
            return lowered.index(text.lower())
    choices = ", ".join(f"{i} {name}" for i, name in enumerate(class_names))
    raise AigcError(f"unknown label {text!r}; choose an index or a name: {choices}", param="label")
