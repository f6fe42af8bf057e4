"""Evaluation of generated sketches against real images, with a classifier the project trains itself.

Metrics (direction in brackets):

- ``fid`` (lower): Fréchet distance between Gaussians fitted to the classifier's penultimate features of the
  generated and the real images (Heusel et al. 2017). This is a **domain FID**: computed on our Fashion-MNIST
  classifier, not on Inception-v3, so it is not comparable with published FIDs; compare models with each other.
- ``kid`` (lower): kernel inception distance on the same features: the unbiased MMD^2 with the cubic polynomial
  kernel, averaged over subsets (Bińkowski et al. 2018); unbiased, so usable with few images.
- ``class_accuracy`` (higher): share of generated images the classifier assigns to the class they were made for.
- ``diversity`` (higher, ~1 is ideal): mean pairwise feature distance within each class, divided by the same for
  real images of that class (below 1: less varied than the data; mode collapse shows here).
- ``nn_distance`` and ``near_copies`` (higher / lower): per-pixel RMS distance of each generated image to its
  nearest training image, and the share closer than :data:`NEAR_COPY_RMS` (memorisation). ``real_nn_distance``
  is the same for held-out real images, the baseline a non-memorising model should be near.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import linalg

from aigc_studio.data.images import (
    IMAGE_SUFFIXES,
    ImageDataset,
    is_idx_directory,
    load_fashion_mnist,
    load_image_file,
    load_image_folder,
    read_image_dataset_info,
    to_model_range,
)
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write, atomic_write_json
from aigc_studio.images.provenance import PROVENANCE_KEY, ImageProvenance
from aigc_studio.models.classifier import ImageClassifier
from aigc_studio.models.model_dir import load_image_model
from aigc_studio.models.registry import resolve_model

NEAR_COPY_RMS = 0.05  # per-pixel RMS distance (grey levels in [0, 1]) below which an image counts as a copy
DEFAULT_CLASSIFIER = "fashion-classifier"
MAX_REAL = 10_000  # real images used for FID/KID (a random, seeded subset of a larger set)


# ---- metrics as pure functions on features -----------------------------------------------------------------


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` for feature sets ``(N, D)`` and ``(M, D)``."""
    if len(a) < 2 or len(b) < 2:
        raise AigcError("the Fréchet distance needs at least 2 images on each side", param="generated")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a symmetric PSD matrix: eigh is
    # stable where sqrtm of the non-symmetric product warns on the near-singular covariances of few images.
    values, vectors = linalg.eigh(sigma_a)
    sqrt_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    trace_covmean = np.sqrt(linalg.eigvalsh(sqrt_a @ sigma_b @ sqrt_a).clip(min=0)).sum()
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a) + np.trace(sigma_b) - 2 * trace_covmean)
    return max(value, 0.0)


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, *, subsets: int = 10, subset_size: int = 1000, seed: int = 0) -> float:
    """Unbiased MMD^2 with ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (Bińkowski et al. 2018)."""
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise AigcError("KID needs at least 2 images on each side", param="generated")
    rng = np.random.default_rng(seed)
    dim = a.shape[1]
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        kxx, kyy, kxy = (x @ x.T / dim + 1) ** 3, (y @ y.T / dim + 1) ** 3, (x @ y.T / dim + 1) ** 3
        # the diagonals (an image with itself) are left out of the within-set means: that makes it unbiased
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (size * (size - 1)) - 2 * kxy.mean()
        values.append(mmd)
    return float(np.mean(values))


def mean_pairwise_distance(features: np.ndarray) -> float:
    """Mean Euclidean distance between distinct rows (0 for fewer than two)."""
    if len(features) < 2:
        return 0.0
    distances = torch.cdist(torch.from_numpy(features).double(), torch.from_numpy(features).double())
    return float(distances.sum() / (len(features) * (len(features) - 1)))


def nearest_neighbour_rms(images: np.ndarray, references: np.ndarray, chunk: int = 512) -> np.ndarray:
    """For each image ``(N, C, H, W)`` uint8, the per-pixel RMS distance (in ``[0, 1]`` grey levels) to the closest reference."""
    pixels = images.shape[1] * images.shape[2] * images.shape[3]
    queries = torch.from_numpy(images.reshape(len(images), -1)).float() / 255
    best = torch.full((len(images),), float("inf"))
    for start in range(0, len(references), 20_000):
        block = torch.from_numpy(references[start: start + 20_000].reshape(-1, pixels)).float() / 255
        for q in range(0, len(queries), chunk):
            d = torch.cdist(queries[q: q + chunk], block).min(dim=1).values
            best[q: q + chunk] = torch.minimum(best[q: q + chunk], d)
    return (best / pixels**0.5).numpy()


# ---- inputs ------------------------------------------------------------------------------------------------


@dataclass
class LabelledImages:
    """Images (uint8 ``(N, C, H, W)``) with class names per image (None where unknown), and where they came from."""

    images: np.ndarray
    labels: list[str | None]
    source: str
    files: list[str] = field(default_factory=list)


def load_generated(directory: str | Path, *, image_size: int, channels: int) -> LabelledImages:
    """Generated images: every PNG/JPEG under ``directory`` (not contact sheets); the label comes from the
    PNG's generation record, else from the parent folder's name when the folder is not ``directory`` itself.

    Raises:
        AigcError: no such folder, no images, or a corrupt image.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AigcError(f"generated-images folder not found: {directory}; pass the --out folder of `aigc sketch`",
                        param="generated")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and p.name != "contact-sheet.png")
    if not files:
        raise AigcError(f"{directory} holds no images (.png, .jpg); generate some with `aigc sketch --out {directory}`",
                        param="generated")
    images, labels = [], []
    for path in files:
        images.append(load_image_file(path, image_size=image_size, channels=channels))
        labels.append(_label_of(path, directory))
    return LabelledImages(np.stack(images), labels, str(directory), [str(p.relative_to(directory)) for p in files])


def _label_of(path: Path, root: Path) -> str | None:
    with Image.open(path) as image:
        text = image.info.get(PROVENANCE_KEY)
    if text:
        try:
            return ImageProvenance.model_validate_json(text).label
        except ValueError:
            pass
    return path.parent.name if path.parent != root else None


@dataclass
class RealImages:
    """Real images to compare with (``reference``) and the training images memorisation is measured against."""

    reference: LabelledImages
    training: np.ndarray
    held_out: bool  # whether ``reference`` is disjoint from ``training`` (a prepared data set's val split)


def load_real(source: str | Path, *, image_size: int, channels: int, seed: int = 0) -> RealImages:
    """Real images from a prepared image data set (validation split vs training split), Fashion-MNIST IDX
    files, or a folder of class folders (both: a seeded subset of at most :data:`MAX_REAL`, and all as training).

    Raises:
        AigcError: the source is none of those, or unreadable.
    """
    source = Path(source)
    if not source.exists():
        raise AigcError(f"real images not found: {source}; pass a Fashion-MNIST IDX folder, a prepared image data set "
                        "or a folder of class folders", param="real")
    if (source / "dataset.json").is_file():
        read_image_dataset_info(source)
        train, val = ImageDataset(source, "train"), ImageDataset(source, "val")
        if (train.image_size, train.channels) != (image_size, channels):
            raise AigcError(f"{source} holds {train.image_size}px images with {train.channels} channel(s); the classifier "
                            f"needs {image_size}px with {channels}", param="real")
        names = [val.class_names[i] for i in val.labels.tolist()]
        reference = LabelledImages(val.images.numpy(), names, f"{source} (validation split)")
        return RealImages(reference, train.images.numpy(), held_out=True)
    if is_idx_directory(source):
        image_set = load_fashion_mnist(source)
    else:
        image_set = load_image_folder(source, image_size=image_size, channels=channels)
    if image_set.images.shape[1:] != (channels, image_size, image_size):
        raise AigcError(f"{source} holds images of shape {image_set.images.shape[1:]}; the classifier needs "
                        f"({channels}, {image_size}, {image_size}); prepare them with `aigc data prepare-images`", param="real")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(image_set))[:MAX_REAL])
    names = [image_set.class_names[i] for i in image_set.labels[pick].tolist()]
    reference = LabelledImages(image_set.images[pick], names, str(source))
    return RealImages(reference, image_set.images, held_out=False)


# ---- the evaluation ----------------------------------------------------------------------------------------


@dataclass
class ImageEvalReport:
    """Everything ``aigc eval images`` measures; ``per_class`` holds each class's own figures."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    counts: dict[str, int]
    generated: str
    real: str
    classifier: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def classifier_outputs(classifier: ImageClassifier, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """``(features (N, D), predicted class (N,))`` of uint8 images."""
    features, predictions = [], []
    for start in range(0, len(images), batch_size):
        batch = to_model_range(torch.from_numpy(np.ascontiguousarray(images[start: start + batch_size])))
        embedded = classifier.embed(batch)
        features.append(embedded.double().numpy())
        predictions.append(classifier.head(embedded).argmax(dim=1).numpy())
    return np.concatenate(features), np.concatenate(predictions)


def load_classifier(name_or_dir: str | Path = DEFAULT_CLASSIFIER) -> ImageClassifier:
    """The judging classifier (a model directory, or the bundled ``fashion-classifier``).

    Raises:
        AigcError: not found, or not a classifier.
    """
    try:
        directory = resolve_model(name_or_dir)
    except AigcError:
        raise AigcError(f"classifier {str(name_or_dir)!r} not found; train one with `aigc train --data DATA "
                        "--config recipes/fashion-classifier.toml --out var/models/fashion-classifier` and pass "
                        "--classifier var/models/fashion-classifier", param="classifier") from None
    model = load_image_model(directory).model
    if not isinstance(model, ImageClassifier):
        raise AigcError(f"{directory} is a {model.model_type} model, not a classifier; pass a model trained with "
                        "--arch classifier", param="classifier")
    return model


def evaluate_images(
    generated: str | Path, real: str | Path, *, classifier: str | Path | ImageClassifier = DEFAULT_CLASSIFIER, seed: int = 0,
) -> tuple[ImageEvalReport, LabelledImages]:
    """Measure the generated images in ``generated`` against ``real`` with ``classifier``.

    Returns:
        The report, and the generated images (for the HTML report's grids).

    Raises:
        AigcError: a folder or model is missing, a generated label is not one of the classifier's classes, fewer than
            two generated images.
    """
    judge = classifier if isinstance(classifier, ImageClassifier) else load_classifier(classifier)
    config = judge.config
    fake = load_generated(generated, image_size=config.image_size, channels=config.channels)
    real_images = load_real(real, image_size=config.image_size, channels=config.channels, seed=seed)
    report = measure_images(fake, real_images, judge, seed=seed)
    report.classifier = "given classifier" if isinstance(classifier, ImageClassifier) else str(classifier)
    return report, fake


def measure_images(fake: LabelledImages, real_images: RealImages, judge: ImageClassifier, *, seed: int = 0) -> ImageEvalReport:
    """Every metric of :func:`evaluate_images` on images already in memory (what benchmarks call).

    Raises:
        AigcError: fewer than two generated images, or a label the classifier does not know.
    """
    config = judge.config
    if len(fake.images) < 2:
        raise AigcError(f"{fake.source} holds {len(fake.images)} image; the distances need at least 2", param="generated")
    fake_features, fake_predicted = classifier_outputs(judge, fake.images)
    real_features, _ = classifier_outputs(judge, real_images.reference.images)
    metrics = {"fid": frechet_distance(fake_features, real_features),
               "kid": kernel_inception_distance(fake_features, real_features, seed=seed)}
    notes = ["fid and kid are domain metrics on the project's Fashion-MNIST classifier's features, not Inception: "
             "compare models with each other, not with published FIDs"]

    # class accuracy and per-class diversity, where the labels are known
    per_class: dict[str, dict[str, float]] = {}
    known = [i for i, label in enumerate(fake.labels) if label is not None]
    unknown_labels = sorted({fake.labels[i] for i in known} - set(config.class_names))
    if unknown_labels:
        raise AigcError(f"generated labels {', '.join(map(str, unknown_labels))} are not classes of the classifier "
                        f"({', '.join(config.class_names)}); evaluate with a classifier trained on the same classes",
                        param="classifier")
    if known:
        index = {name: i for i, name in enumerate(config.class_names)}
        wanted = np.array([index[fake.labels[i]] for i in known])
        metrics["class_accuracy"] = float((fake_predicted[known] == wanted).mean())
        real_by_class = {name: real_features[[i for i, lab in enumerate(real_images.reference.labels) if lab == name]]
                         for name in config.class_names}
        ratios = []
        for name in config.class_names:
            rows = [i for i in known if fake.labels[i] == name]
            if not rows:
                continue
            spread, real_spread = mean_pairwise_distance(fake_features[rows]), mean_pairwise_distance(real_by_class[name][:500])
            ratio = spread / real_spread if real_spread > 0 else 0.0
            per_class[name] = {"count": float(len(rows)), "class_accuracy": float((fake_predicted[rows] == index[name]).mean()),
                               "diversity": ratio}
            if len(rows) >= 2:
                ratios.append(ratio)
        if ratios:
            metrics["diversity"] = float(np.mean(ratios))
    else:
        notes.append("no generated image carries a label (no generation record, no class folder): class accuracy "
                     "and diversity are skipped")

    # memorisation: distance to the nearest training image
    distances = nearest_neighbour_rms(fake.images, real_images.training)
    metrics["nn_distance"] = float(distances.mean())
    metrics["near_copies"] = float((distances < NEAR_COPY_RMS).mean())
    if real_images.held_out:
        sample = real_images.reference.images[np.random.default_rng(seed).permutation(len(real_images.reference.images))[:500]]
        metrics["real_nn_distance"] = float(nearest_neighbour_rms(sample, real_images.training).mean())
    else:
        notes.append("--real is not a prepared data set, so there is no held-out baseline for nn_distance "
                     "(pass a folder from `aigc data prepare-images` for one)")
    return ImageEvalReport(
        metrics=metrics, per_class=per_class,
        counts={"generated": len(fake.images), "real": len(real_images.reference.images), "training": len(real_images.training)},
        generated=fake.source, real=real_images.reference.source, classifier="given classifier", notes=notes,
    )


_DIRECTIONS = {"fid": "lower", "kid": "lower", "class_accuracy": "higher", "diversity": "~1", "nn_distance": "higher",
               "near_copies": "lower", "real_nn_distance": "baseline"}


def write_image_report(report: ImageEvalReport, fake: LabelledImages, *, html_path: str | Path | None = None,
                       json_path: str | Path | None = None, per_class: int = 16) -> list[Path]:
    """Write the JSON results and a self-contained HTML report (metrics, then a sample grid per class)."""
    written = []
    if json_path is not None:
        written.append(atomic_write_json(json_path, report.to_dict()))
    if html_path is not None:
        rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{value:.4f}</td><td>{_DIRECTIONS.get(name, '')}</td></tr>"
                       for name, value in report.metrics.items())
        sections = []
        groups: dict[str, list[int]] = {}
        for i, label in enumerate(fake.labels):
            groups.setdefault(label or "unlabelled", []).append(i)
        for label, members in groups.items():
            stats = report.per_class.get(label, {})
            caption = ", ".join(f"{k} {v:.2f}" for k, v in stats.items())
            grid = _grid_png(fake.images[members[:per_class]])
            sections.append(f"<h3>{html.escape(label)}</h3><p>{html.escape(caption)}</p>"
                            f"<img alt='{html.escape(label)} samples' src='data:image/png;base64,{grid}'>")
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in report.notes)
        page = f"""<!doctype html><html lang="en"><meta charset="utf-8"><title>Image evaluation</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:.2em .8em;text-align:left}}
img{{image-rendering:pixelated;width:{per_class * 30}px}}</style>
<h1>Image evaluation</h1>
<p>Generated: <code>{html.escape(report.generated)}</code> ({report.counts['generated']} images) · real:
<code>{html.escape(report.real)}</code> ({report.counts['real']}) · judge: <code>{html.escape(report.classifier)}</code></p>
<table><tr><th>metric</th><th>value</th><th>better</th></tr>{rows}</table><ul>{notes}</ul>
<h2>Samples by class</h2>{''.join(sections)}</html>"""
        written.append(atomic_write(html_path, page))
    return written


def _grid_png(images: np.ndarray, padding: int = 1) -> str:
    count, channels, height, width = images.shape
    sheet = Image.new("L" if channels == 1 else "RGB", (count * (width + padding) + padding, height + 2 * padding), 255)
    for i, tile in enumerate(images):
        sheet.paste(Image.fromarray(tile[0]) if channels == 1 else Image.fromarray(tile.transpose(1, 2, 0)),
                    (padding + i * (width + padding), padding))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
