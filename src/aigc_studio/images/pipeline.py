"""Design sketches from the image models: the one library entry point for the CLI, the server and the studio.

::

    batch = generate_sketches("fashion-sketch", "sneaker", n=8, seed=7)          # or a model directory
    paths = save_sketches(batch, "out/")                                         # 000.png ... contact-sheet.png
    walk = interpolate_sketches("var/models/fashion-vae", "dress", seed_a=1, seed_b=2, n=8)
    more = sketch_variations("var/models/fashion-diffusion", "out/000.png", "sneaker", n=4, seed=3, strength=0.5)

Each :class:`Sketch` is a PIL image plus its :class:`~aigc_studio.images.provenance.ImageProvenance` record;
``png_bytes()`` gives the PNG with the record embedded (what an HTTP endpoint returns as ``b64_json``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from aigc_studio.data.images import load_image_file, resolve_label, to_model_range, to_pixels
from aigc_studio.errors import AigcError
from aigc_studio.images.provenance import C2paSigner, ImageProvenance, png_bytes, write_png
from aigc_studio.images.sampling import SamplingOptions, draw_noise, sample, variations
from aigc_studio.models.model_dir import load_image_model, weights_sha256
from aigc_studio.models.registry import resolve_model

MAX_SKETCHES = 64  # per call: a contact sheet stays readable and a CPU answers within seconds
MAX_SIZE = 512  # output side in pixels (upscaled from the model's size for viewing)
CONTACT_SHEET = "contact-sheet.png"


@dataclass
class SketchModel:
    """A loaded image generator with what provenance needs (name, weights hash, class names)."""

    model: torch.nn.Module
    name: str
    directory: Path
    weights_sha256: str

    @property
    def class_names(self) -> list[str]:
        return list(self.model.config.class_names)

    @property
    def model_type(self) -> str:
        return self.model.model_type


@lru_cache(maxsize=4)
def _load_cached(directory: str, mtime_ns: int) -> SketchModel:
    loaded = load_image_model(directory)
    return SketchModel(loaded.model, Path(directory).name, Path(directory), weights_sha256(directory))


def load_sketch_model(name_or_dir: str | Path) -> SketchModel:
    """The image model behind ``--model`` (a directory or a bundled name), cached while its weights are unchanged.

    Raises:
        AigcError: no such model, or it is not an image model.
    """
    directory = resolve_model(name_or_dir)
    weights = directory / "model.safetensors"
    mtime = weights.stat().st_mtime_ns if weights.is_file() else 0
    # a copy named as the caller named it; the cached one (and its weights) is shared
    return dataclasses.replace(_load_cached(str(directory), mtime), name=str(name_or_dir))


@dataclass
class Sketch:
    """One generated image and its generation record."""

    image: Image.Image
    record: ImageProvenance

    def png_bytes(self, c2pa_signer: C2paSigner | None = None) -> bytes:
        """The PNG with the record (and a C2PA manifest when a signer is given) embedded."""
        return png_bytes(self.image, self.record, c2pa_signer=c2pa_signer)


@dataclass
class SketchBatch:
    """The sketches of one call, in order, with the label they were made for."""

    sketches: list[Sketch]
    label: str
    label_index: int
    model: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> list[Image.Image]:
        return [sketch.image for sketch in self.sketches]


def _as_model(model: str | Path | SketchModel) -> SketchModel:
    return model if isinstance(model, SketchModel) else load_sketch_model(model)


def _check_n(n: int) -> None:
    if not 1 <= n <= MAX_SKETCHES:
        raise AigcError(f"n must be between 1 and {MAX_SKETCHES}, got {n}; ask for fewer sketches per call", param="n")


def _to_images(tensor: torch.Tensor, size: int | None) -> list[Image.Image]:
    if size is not None and not 8 <= size <= MAX_SIZE:
        raise AigcError(f"size must be between 8 and {MAX_SIZE} pixels, got {size}", param="size")
    images = []
    for pixels in to_pixels(tensor):
        image = Image.fromarray(pixels[0]) if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0))
        if size is not None and size != image.width:
            image = image.resize((size, size), Image.Resampling.LANCZOS)
        images.append(image)
    return images


def _batch(
    sketch_model: SketchModel, tensor: torch.Tensor, label_index: int, seed: int, mode: str, parameters: dict[str, Any],
    size: int | None,
) -> SketchBatch:
    label = sketch_model.class_names[label_index]
    sketches = [
        Sketch(image, ImageProvenance(model=sketch_model.name, model_type=sketch_model.model_type,
                                      model_sha256=sketch_model.weights_sha256, label=label, label_index=label_index,
                                      seed=seed, index=i, mode=mode, parameters=parameters))
        for i, image in enumerate(_to_images(tensor, size))
    ]
    return SketchBatch(sketches, label, label_index, sketch_model.name, parameters)


def _parameters(sketch_model: SketchModel, options: SamplingOptions, size: int | None, **extra: Any) -> dict[str, Any]:
    parameters: dict[str, Any] = {"size": size or sketch_model.model.config.image_size, **extra}
    if sketch_model.model_type == "aigc-diffusion":
        parameters.update(steps=options.steps, guidance=options.guidance, eta=options.eta)
    return parameters


def generate_sketches(
    model: str | Path | SketchModel, label: str | int, n: int, seed: int, *,
    options: SamplingOptions | None = None, size: int | None = None,
) -> SketchBatch:
    """``n`` sketches of class ``label`` from ``seed``: the same arguments give the same pixels.

    Args:
        model: a model directory, a bundled model's name, or a loaded :class:`SketchModel`.
        label: a class index or name (``"sneaker"``; user data sets use their folder names).
        n: how many, 1 to :data:`MAX_SKETCHES`.
        seed: fixes the noise; sketch ``i`` is the same for any ``n > i``.
        options: diffusion sampling settings (steps, guidance, eta).
        size: output side in pixels (Lanczos upscaling for viewing); None keeps the model's size.

    Raises:
        AigcError: unknown label, ``n`` or ``size`` out of range, or the model is not an image generator.
    """
    _check_n(n)
    sketch_model, options = _as_model(model), options or SamplingOptions()
    label_index = resolve_label(label, sketch_model.class_names)
    noise = draw_noise(sketch_model.model, n, seed)
    labels = torch.full((n,), label_index, dtype=torch.long)
    tensor = sample(sketch_model.model, labels, noise, options)
    return _batch(sketch_model, tensor, label_index, seed, "sample", _parameters(sketch_model, options, size), size)


def slerp(a: torch.Tensor, b: torch.Tensor, fraction: float) -> torch.Tensor:
    """Spherical interpolation: Gaussian noise keeps its norm along the way (a straight line would shrink it)."""
    a_flat, b_flat = a.flatten(), b.flatten()
    cos = torch.dot(a_flat, b_flat) / (a_flat.norm() * b_flat.norm())
    omega = torch.arccos(cos.clamp(-1, 1))
    if omega.abs() < 1e-4:
        return (1 - fraction) * a + fraction * b
    return (torch.sin((1 - fraction) * omega) * a + torch.sin(fraction * omega) * b) / torch.sin(omega)


def interpolate_sketches(
    model: str | Path | SketchModel, label: str | int, seed_a: int, seed_b: int, n: int, *,
    options: SamplingOptions | None = None, size: int | None = None,
) -> SketchBatch:
    """``n`` sketches walking from sketch 0 of ``seed_a`` to sketch 0 of ``seed_b`` (both of ``label``).

    Raises:
        AigcError: ``n`` below 2 or above the cap, unknown label.
    """
    _check_n(n)
    if n < 2:
        raise AigcError("an interpolation needs n >= 2 frames", param="n")
    sketch_model, options = _as_model(model), options or SamplingOptions()
    label_index = resolve_label(label, sketch_model.class_names)
    start, end = draw_noise(sketch_model.model, 1, seed_a)[0], draw_noise(sketch_model.model, 1, seed_b)[0]
    noise = torch.stack([slerp(start, end, i / (n - 1)) for i in range(n)])
    tensor = sample(sketch_model.model, torch.full((n,), label_index, dtype=torch.long), noise, options)
    parameters = _parameters(sketch_model, options, size, interpolate=[seed_a, seed_b])
    return _batch(sketch_model, tensor, label_index, seed_a, "interpolate", parameters, size)


def sketch_variations(
    model: str | Path | SketchModel, image: str | Path | Image.Image, label: str | int, n: int, seed: int, *,
    strength: float = 0.5, options: SamplingOptions | None = None, size: int | None = None,
) -> SketchBatch:
    """``n`` variations of ``image`` (a file or a PIL image) as a ``label``; ``strength`` 0 keeps it, 1 ignores it.

    Raises:
        AigcError: a GAN (no encoder), strength outside ``(0, 1]``, an unreadable image, unknown label, ``n`` out of range.
    """
    _check_n(n)
    sketch_model, options = _as_model(model), options or SamplingOptions()
    config = sketch_model.model.config
    label_index = resolve_label(label, sketch_model.class_names)
    if isinstance(image, Image.Image):
        mode = "L" if config.channels == 1 else "RGB"
        pixels = np.asarray(image.convert(mode).resize((config.image_size, config.image_size), Image.Resampling.LANCZOS))
        pixels = pixels[None] if config.channels == 1 else pixels.transpose(2, 0, 1)
        source = "image"
    else:
        pixels = load_image_file(image, image_size=config.image_size, channels=config.channels)
        source = Path(image).name
    start = to_model_range(torch.from_numpy(np.array(pixels, dtype=np.uint8))[None]).repeat(n, 1, 1, 1)
    noise = draw_noise(sketch_model.model, n, seed)
    labels = torch.full((n,), label_index, dtype=torch.long)
    tensor = variations(sketch_model.model, start, labels, noise, strength, options)
    parameters = _parameters(sketch_model, options, size, strength=strength, source=source)
    return _batch(sketch_model, tensor, label_index, seed, "variation", parameters, size)


def contact_sheet(images: list[Image.Image], *, columns: int | None = None, padding: int = 2) -> Image.Image:
    """The images on one sheet, in reading order, ``columns`` wide (default: as square as possible)."""
    if not images:
        raise AigcError("no images to put on a contact sheet")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    sheet = Image.new(images[0].mode, (columns * (width + padding) + padding, rows * (height + padding) + padding),
                      255 if images[0].mode == "L" else (255, 255, 255))
    for i, image in enumerate(images):
        sheet.paste(image, (padding + (i % columns) * (width + padding), padding + (i // columns) * (height + padding)))
    return sheet


def save_sketches(batch: SketchBatch, out: str | Path, *, c2pa_signer: C2paSigner | None = None) -> list[Path]:
    """Write ``000.png``, ``001.png``, ... (each with its record) and ``contact-sheet.png`` into ``out``, atomically.

    Returns:
        The paths written, the contact sheet last.
    """
    out = Path(out)
    paths = [write_png(out / f"{i:03d}.png", sketch.image, sketch.record, c2pa_signer=c2pa_signer)
             for i, sketch in enumerate(batch.sketches)]
    first = batch.sketches[0].record
    sheet = contact_sheet(batch.images, columns=len(batch.images) if first.mode == "interpolate" else None)
    # the sheet is generated content too: it carries the batch's record (its own pixel hash, the sketch count)
    sheet_record = first.model_copy(update={"parameters": {**first.parameters, "contact_sheet_of": len(batch.sketches)}})
    paths.append(write_png(out / CONTACT_SHEET, sheet, sheet_record))
    return paths
