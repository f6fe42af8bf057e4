"""Benchmark of the sketch models: training time, domain FID/KID, class accuracy, sampling speed, DDIM steps.

    python bench/images.py                       # trains what is missing (~45 min on 2 cores), then measures
    python bench/images.py --skip-train          # measures model directories already in --models
    python bench/images.py --skip-train --models var/models --only vae   # measures just those generators
    python bench/images.py --quick               # smoke run: 2,000 images, 30 steps per model (minutes, not figures)

Steps: prepare Fashion-MNIST (54,000 train / 6,000 validation) into ``--data`` if missing; train the judging
classifier and the three generators with their recipes into ``--models``; then for each generator draw
``--n`` conditional samples (an equal share per class) and measure them against the validation split with the
classifier: domain FID and KID, class accuracy, diversity, memorisation; sampling speed in images/s; and for
the diffusion model FID and accuracy against the number of DDIM steps. Writes the ``images`` section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, SHARED_DATA, markdown_table, write_section  # noqa: E402

from aigc_studio.data.images import ImageDataset, prepare_image_dataset, to_pixels  # noqa: E402
from aigc_studio.evaluation.images import LabelledImages, load_classifier, load_real, measure_images  # noqa: E402
from aigc_studio.images.sampling import SamplingOptions, draw_noise, sample  # noqa: E402
from aigc_studio.models.model_dir import load_image_model  # noqa: E402
from aigc_studio.training import image_tasks  # noqa: E402
from aigc_studio.training.image_tasks import classifier_accuracy  # noqa: E402
from aigc_studio.training.checkpoint import checkpoint_path  # noqa: E402
from aigc_studio.training.run import run_training  # noqa: E402

RECIPES = {"classifier": "fashion-classifier", "vae": "fashion-vae", "gan": "fashion-gan", "diffusion": "fashion-diffusion"}
DDIM_STEPS = (10, 25, 50)


def train_all(data: Path, models: Path, *, quick: bool) -> dict[str, float]:
    """Train every recipe whose model directory is missing; returns the wall time of each run (0 when reused)."""
    times = {}
    for arch, recipe in RECIPES.items():
        out = models / recipe
        if (out / "model.safetensors").is_file():
            times[arch] = 0.0
            continue
        overrides = {"data.directory": str(data)}
        if quick:
            image_tasks.GRID_DIFFUSION_STEPS = 4
            overrides |= {"schedule.max_steps": 30, "schedule.warmup_steps": 5, "eval.interval": 15, "eval.steps": 2,
                          "logging.checkpoint_interval": 15, "schedule.lr_decay_steps": 0}
        command = f"aigc train --data {data} --config recipes/{recipe}.toml --out {out}"
        if checkpoint_path(out).is_file():  # an interrupted benchmark continues its run
            result = run_training(out, overrides=overrides, resume=True, command=command + " --resume")
        else:
            result = run_training(out, config_path=REPO_ROOT / "recipes" / f"{recipe}.toml", overrides=overrides,
                                  command=command)
        times[arch] = result.wall_time_s
    return times


def conditional_samples(model: torch.nn.Module, n: int, options: SamplingOptions, batch: int = 250) -> tuple[np.ndarray, np.ndarray, float]:
    """``n`` samples, an equal share per class, in batches: ``(uint8 images, labels, images per second)``."""
    num_classes = model.config.num_classes
    labels = torch.arange(num_classes).repeat_interleave(-(-n // num_classes))[:n]
    noise = draw_noise(model, n, seed=2024)
    images = []
    start = time.perf_counter()
    for i in range(0, n, batch):
        images.append(to_pixels(sample(model, labels[i: i + batch], noise[i: i + batch], options)))
    seconds = time.perf_counter() - start
    return np.concatenate(images), labels.numpy(), n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "var" / "data" / "fashion")
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "var" / "bench" / "images")
    parser.add_argument("--n", type=int, default=1000, help="conditional samples per model")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--only", nargs="+", choices=("vae", "gan", "diffusion"), default=("vae", "gan", "diffusion"),
                        help="with --skip-train: measure only these generators (their directories in --models)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 images, 30 steps, 100 samples")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    # 1. data and models
    if not (args.data / "dataset.json").is_file():
        prepare_image_dataset(SHARED_DATA / "fashion-mnist", args.data, limit=2000 if args.quick else None)
    n = 100 if args.quick else args.n
    times = {arch: 0.0 for arch in RECIPES} if args.skip_train else train_all(args.data, args.models, quick=args.quick)
    judge = load_classifier(args.models / RECIPES["classifier"])
    real = load_real(args.data, image_size=judge.config.image_size, channels=judge.config.channels)
    judge_accuracy = classifier_accuracy(judge, ImageDataset(args.data, "val"))

    # 2. each generator: quality and speed
    rows, step_rows = [], []
    main_steps = 5 if args.quick else 25
    for arch in args.only if args.skip_train else ("vae", "gan", "diffusion"):
        directory = args.models / RECIPES[arch]
        model = load_image_model(directory).model
        images, labels, speed = conditional_samples(model, n, SamplingOptions(steps=main_steps, guidance=2.0))
        names = [model.config.class_names[i] for i in labels]
        report = measure_images(LabelledImages(images, names, str(directory)), real, judge)
        m = report.metrics
        size_mb = (directory / "model.safetensors").stat().st_size / 1e6
        rows.append([arch, f"{model.num_parameters() / 1e6:.2f}M", f"{size_mb:.1f}", f"{times[arch] / 60:.1f}" if times[arch] else "reused",
                     f"{m['fid']:.2f}", f"{m['kid']:.4f}", f"{m['class_accuracy']:.3f}", f"{m['diversity']:.2f}",
                     f"{m['nn_distance']:.3f} ({m['real_nn_distance']:.3f})", f"{speed:.1f}"])
        if arch == "diffusion":
            for steps in (2, 5) if args.quick else DDIM_STEPS:
                images, labels, speed = conditional_samples(model, n, SamplingOptions(steps=steps, guidance=2.0))
                report = measure_images(LabelledImages(images, names, str(directory)), real, judge)
                step_rows.append([steps, f"{report.metrics['fid']:.2f}", f"{report.metrics['class_accuracy']:.3f}", f"{speed:.1f}"])

    # 3. the section
    body = "\n\n".join([
        "## Design sketches (Fashion-MNIST, 28x28, class-conditional)",
        f"{n:,} conditional samples per model (an equal share per class, {main_steps} DDIM steps and guidance 2 for diffusion), "
        f"measured against the {len(real.reference.images):,} validation images with the project's classifier "
        f"(`recipes/fashion-classifier.toml`; its validation accuracy: **{judge_accuracy:.3f}**). FID and KID are "
        "**domain** metrics on that classifier's 128-d features, not Inception-v3: compare the rows with each other. "
        "For context only, published unconditional Fashion-MNIST FIDs on Inception features are about 21.5 (WGAN) and "
        "29.3 (two-stage VAE). `nn distance` is the mean per-pixel RMS distance to the nearest training image "
        "(in brackets: the same for held-out real images; far below it would mean copying).",
        markdown_table(["model", "params", "MB", "train min", "domain FID ↓", "KID ↓", "class acc ↑", "diversity (~1)",
                        "nn distance", "images/s"], rows),
        *(["### DDIM steps against quality (diffusion, guidance 2)",
            markdown_table(["DDIM steps", "domain FID ↓", "class acc ↑", "images/s"], step_rows)] if step_rows else []),
    ])
    if args.quick:
        body = "**Smoke run (`--quick`): tiny data and 30 training steps; these are not the figures.**\n\n" + body
    write_section("images", body)
    print(body)


if __name__ == "__main__":
    main()
