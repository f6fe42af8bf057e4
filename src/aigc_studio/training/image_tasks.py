"""The image models as :class:`~aigc_studio.training.tasks.TrainingTask` s: ``--arch vae|gan|diffusion|classifier``.

All four read a data set prepared by ``aigc data prepare-images`` (batches are a pure function of the step,
so resuming is exact) and write an image model directory (``config.json``, ``model.safetensors``,
``README.md``) through ``models.model_dir.save_image_model``. After every validation pass the generators
write a sample grid, one row per class, to ``samples/step-NNNNNN.png`` in the run directory (the same noise
every time, so the grids show the model learning).

What "validation loss" means (the Trainer keeps the weights with the lowest one):

- VAE: the negative ELBO per image (reconstruction + beta * KL), with ``z`` the posterior mean.
- diffusion: the noise-prediction MSE at fixed random steps and noise (the same draws every pass).
- GAN: adversarial losses do not measure quality, so validation compares the averaged generator's images
  with real validation images of the same classes by the sliced Wasserstein distance (Rabin et al. 2011;
  as in Karras et al. 2018): lower is closer to the data.
- classifier: the cross-entropy on the validation split (its accuracy goes into the model card).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from aigc_studio.data.images import FASHION_MNIST_CLASSES, ImageDataset, to_pixels
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_with
from aigc_studio.images.sampling import SamplingOptions, draw_noise, sample
from aigc_studio.models.classifier import ClassifierConfig, ImageClassifier
from aigc_studio.models.diffusion import DDIMScheduler, DiffusionConfig, UNet
from aigc_studio.models.gan import GAN, GANConfig
from aigc_studio.models.model_dir import ModelCard, save_image_model
from aigc_studio.models.vae import VAE, VAEConfig
from aigc_studio.training.config import OptimiserConfig, TrainConfig, checked_model_table
from aigc_studio.training.distributed import skip_gradient_sync
from aigc_studio.training.tasks import RunReport, StepContext, TrainingTask, move_to_device

# --arch name -> (model class, its config class)
IMAGE_MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "vae": (VAE, VAEConfig),
    "gan": (GAN, GANConfig),
    "diffusion": (UNet, DiffusionConfig),
    "classifier": (ImageClassifier, ClassifierConfig),
}
# Config fields that come from the prepared data set, not from the [model] table.
_DERIVED_FIELDS = {"image_size": "prepare-images --size", "channels": "prepare-images --channels",
                   "class_names": "the data set's classes"}
SAMPLES_DIRECTORY = "samples"
GRID_COLUMNS = 8  # sketches per class in the training grids
GRID_DIFFUSION_STEPS = 20  # DDIM steps of the diffusion grids: ~10 s on 2 cores for 80 sketches at 28px
_GRID_SEED = 1234  # the grids' noise: fixed, so successive grids compare
_EVAL_SEED = 4321  # the diffusion and GAN validation draws: fixed, so validation passes compare


def build_image_model_config(arch: str, params: dict[str, Any], info: dict[str, Any]) -> Any:
    """The architecture's config from the recipe's ``[model]`` table and the data set's image shape and classes.

    Raises:
        AigcError: unknown arch, unknown or derived key, wrong type, or a value the model rejects.
    """
    if arch not in IMAGE_MODELS:
        raise AigcError(f"unknown image arch {arch!r}; choose one of: {', '.join(IMAGE_MODELS)}", param="arch")
    config_class = IMAGE_MODELS[arch][1]
    checked = checked_model_table(config_class, params, arch=arch, derived=_DERIVED_FIELDS)
    return config_class(**checked, image_size=int(info["image_size"]), channels=int(info["channels"]),
                        class_names=list(info["class_names"]))


class ImageTask(TrainingTask):
    """Shared by the image architectures: data, batches, sample grids and the model directory.

    Args:
        data_directory: a directory written by ``aigc data prepare-images``.
        arch: a key of :data:`IMAGE_MODELS`.
        model_params: the ``[model]`` table without ``arch``.
        batch_size: images per micro-batch.
        seed: the data-order seed.

    Raises:
        AigcError: the directory is not a prepared image data set, or the model settings are invalid.
    """

    items_name = "images"

    def __init__(self, data_directory: str | Path, arch: str, model_params: dict[str, Any], *, batch_size: int, seed: int) -> None:
        self.data_directory = Path(data_directory)
        self.train_data = ImageDataset(self.data_directory, "train")
        self.val_data = ImageDataset(self.data_directory, "val")
        self.arch = arch
        self.model_config = build_image_model_config(arch, model_params, self.train_data.info)
        self.batch_size = batch_size
        self.seed = seed

    @staticmethod
    def from_config(config: TrainConfig) -> ImageTask:
        """The task a :class:`TrainConfig` with an image ``model.arch`` describes."""
        task_class = {"vae": VAETask, "gan": GANTask, "diffusion": DiffusionTask, "classifier": ClassifierTask}.get(config.model.arch)
        if task_class is None:
            raise AigcError(f"unknown image arch {config.model.arch!r}; choose one of: {', '.join(IMAGE_MODELS)}", param="arch")
        return task_class(config.data.directory, config.model.arch, config.model.params,
                          batch_size=config.data.batch_size, seed=config.seed)

    def build_model(self) -> nn.Module:
        return IMAGE_MODELS[self.arch][0](self.model_config)

    @property
    def items_per_batch(self) -> int:
        return self.batch_size

    def batch(self, index: int, rank: int, world_size: int) -> Any:
        # batch_size is the global batch; rank r of w trains on its rows r::w (the same split as text data).
        images, labels = self.train_data.get_batch(index, self.batch_size, self.seed)
        return images[rank::world_size], labels[rank::world_size]

    def eval_batches(self) -> Iterator[Any]:
        return self.val_data.iter_eval_batches(self.batch_size)

    # ---- sample grids -------------------------------------------------------------------------------

    def sample_grid(self, model: nn.Module) -> Image.Image:
        """One row per class, :data:`GRID_COLUMNS` sketches each, from fixed noise (no global RNG draw)."""
        num_classes = self.model_config.num_classes
        labels = torch.arange(num_classes).repeat_interleave(GRID_COLUMNS)
        noise = draw_noise(model, GRID_COLUMNS, _GRID_SEED).repeat(num_classes, *([1] * (len(model.noise_shape(1)) - 1)))
        was_training = model.training
        model.eval()
        images = sample(model, labels, noise, SamplingOptions(steps=GRID_DIFFUSION_STEPS, guidance=2.0))
        model.train(was_training)
        return image_grid(images, GRID_COLUMNS)

    def after_evaluation(self, model: nn.Module, step: int, run_directory: Path) -> None:
        grid = self.sample_grid(model)
        atomic_write_with(run_directory / SAMPLES_DIRECTORY / f"step-{step:06d}.png", lambda tmp: grid.save(tmp, format="PNG"))

    # ---- the model directory ------------------------------------------------------------------------

    def card_metrics(self, model: nn.Module, report: RunReport) -> dict[str, float]:
        """The metrics the model card lists (subclasses add their own)."""
        metrics: dict[str, float] = {}
        if report.best_val_loss is not None:
            metrics["best_val_loss"] = report.best_val_loss
            metrics["best_step"] = float(report.best_step or 0)
        metrics["steps"] = float(report.steps)
        metrics["wall_time_s"] = report.wall_time_s
        metrics["images_per_s"] = report.items_per_s
        return metrics

    def save_model(self, model: nn.Module, directory: Path, report: RunReport) -> None:
        """Write the image model directory with a card stating the data, the command, the recipe and the metrics."""
        info = self.train_data.info
        classes = ", ".join(info["class_names"])
        data = (f"Prepared with `aigc data prepare-images` into `{self.data_directory}`: {info['num_train']:,} training "
                f"and {info['num_val']:,} validation images, {info['image_size']}x{info['image_size']}, "
                f"{'grey' if info['channels'] == 1 else 'colour'}; classes: {classes}.")
        ending = "stopped early as validation stopped improving" if report.status == "early_stopped" else "as planned"
        description = "\n".join([
            f"A class-conditional {self.arch} trained with AIGC Studio for {report.steps} steps ({ending}); these weights "
            f"are the best by validation loss ({_VAL_LOSS_MEANING[self.arch]}), from step {report.best_step}.",
            "", "Settings of the run (`train_config.toml` beside this card; `aigc train --config` reads it):",
            "", "```toml", report.recipe.rstrip(), "```",
        ])
        card = ModelCard(
            name=directory.name, description=description, data_description=data,
            data_sha256={item["path"]: item["sha256"] for item in info["inputs"]},
            license="mit" if info["class_names"] == list(FASHION_MNIST_CLASSES) else "other",
            recipe=report.command, num_parameters=report.num_parameters,
            metrics=self.card_metrics(model, report), tags=[self.arch, "image", f"{info['image_size']}px"],
            pipeline_tag="image-classification" if self.arch == "classifier" else "unconditional-image-generation",
        )
        save_image_model(model, directory, card=card)


_VAL_LOSS_MEANING = {
    "vae": "negative ELBO per image, nats",
    "gan": "sliced Wasserstein distance of the averaged generator's images to validation images",
    "diffusion": "noise-prediction MSE",
    "classifier": "cross-entropy",
}


class VAETask(ImageTask):
    """The conditional VAE: the negative ELBO is both the training and the validation loss."""

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        _, loss = model(images, labels)
        return loss


class DiffusionTask(ImageTask):
    """The diffusion U-Net: predict the noise added at a random step; classes dropped for guidance."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scheduler = DDIMScheduler(self.model_config.num_train_timesteps)

    def eval_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        # Fixed steps and noise per validation batch, from a local generator: passes compare, training is untouched.
        generator = torch.Generator().manual_seed(_EVAL_SEED)
        for images, labels in self.val_data.iter_eval_batches(self.batch_size):
            timesteps = torch.randint(0, self.scheduler.num_train_timesteps, (len(images),), generator=generator)
            yield {"images": images, "labels": labels, "timesteps": timesteps,
                   "noise": torch.randn(images.shape, generator=generator)}

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        if isinstance(batch, dict):  # a validation batch: its draws are fixed
            images, labels, timesteps, noise = batch["images"], batch["labels"], batch["timesteps"], batch["noise"]
        else:
            images, labels = batch
            timesteps = torch.randint(0, self.scheduler.num_train_timesteps, (len(images),), device=images.device)
            noise = torch.randn_like(images)
            # classifier-free guidance: some examples learn the unconditional prediction ("no class" token)
            dropped = torch.rand(len(labels), device=labels.device) < self.model_config.label_dropout
            labels = torch.where(dropped, torch.full_like(labels, model.null_label), labels)
        noisy = self.scheduler.add_noise(images, noise, timesteps)
        _, loss = model(noisy, timesteps, labels, noise)
        return loss


class GANTask(ImageTask):
    """The hinge-loss GAN: two Adam optimisers, a discriminator step then a generator step, then the average."""

    def configure_optimisers(self, model: nn.Module, config: OptimiserConfig) -> dict[str, torch.optim.Optimizer]:
        # Adam without weight decay, as SN-GAN and BigGAN; betas come from the recipe (0.0, 0.9 is usual).
        betas = (config.beta1, config.beta2)
        return {
            "generator": torch.optim.Adam(model.generator.parameters(), lr=config.lr, betas=betas),
            "discriminator": torch.optim.Adam(model.discriminator.parameters(), lr=config.lr, betas=betas),
        }

    def trained_networks(self, model: nn.Module) -> dict[str, nn.Module]:
        # Called separately below, so each gets its own DDP wrapper; the EMA copy is never trained.
        return {"generator": model.generator, "discriminator": model.discriminator}

    def train_step(self, model: nn.Module, optimisers: dict[str, torch.optim.Optimizer], context: StepContext) -> torch.Tensor:
        """Discriminator step on real vs generated images, generator step on fresh noise, then the EMA update.

        Training forward passes go through ``context.network`` (DDP when distributed), so gradients are averaged
        over ranks; the fakes of the discriminator step need no gradient and come from the plain generator.

        Returns:
            The sum of the step's discriminator and generator losses (what ``train_loss`` logs for a GAN).
        """
        gan: GAN = model
        generator = context.network("generator", gan.generator)
        discriminator = context.network("discriminator", gan.discriminator)
        batches = [move_to_device(self.batch(context.step * context.grad_accum + i, context.rank, context.world_size),
                                  context.device) for i in range(context.grad_accum)]
        # 1. discriminator: real images above +1, generated ones below -1
        d_total = torch.zeros((), device=context.device)
        for micro_step, (images, labels) in enumerate(batches):
            z = torch.randn(len(images), gan.config.latent_dim, device=context.device)
            with context.accumulate(micro_step, "discriminator"):
                with context.autocast():
                    fake = gan.generator(z, labels).detach()
                    d_loss = gan.discriminator_loss(discriminator(images, labels), discriminator(fake, labels))
                (d_loss / context.grad_accum).backward()
            d_total += d_loss.detach() / context.grad_accum
        self._step(gan.discriminator, optimisers["discriminator"], context.grad_clip)
        # 2. generator: raise the discriminator's scores of fresh samples (the discriminator's gradients are
        # thrown away, so they are never all-reduced)
        g_total = torch.zeros((), device=context.device)
        for micro_step, (images, labels) in enumerate(batches):
            z = torch.randn(len(images), gan.config.latent_dim, device=context.device)
            with context.accumulate(micro_step, "generator"), skip_gradient_sync({"discriminator": discriminator}, skip=True):
                with context.autocast():
                    g_loss = gan.generator_loss(discriminator(generator(z, labels), labels))
                (g_loss / context.grad_accum).backward()
            g_total += g_loss.detach() / context.grad_accum
        self._step(gan.generator, optimisers["generator"], context.grad_clip)
        gan.discriminator.zero_grad(set_to_none=True)  # the generator step left gradients there
        # 3. the moving average of the generator
        gan.update_ema()
        return d_total + g_total

    @staticmethod
    def _step(network: nn.Module, optimiser: torch.optim.Optimizer, grad_clip: float) -> None:
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(network.parameters(), grad_clip)
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    def eval_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(_EVAL_SEED)
        for images, labels in self.val_data.iter_eval_batches(self.batch_size):
            yield {"images": images, "labels": labels,
                   "noise": torch.randn(len(images), self.model_config.latent_dim, generator=generator),
                   "projections": F.normalize(torch.randn(images[0].numel(), 128, generator=generator), dim=0)}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sliced Wasserstein distance between real images and the averaged generator's, class for class."""
        fake = model.sample(batch["labels"], batch["noise"])
        return sliced_wasserstein(batch["images"].flatten(1), fake.flatten(1), batch["projections"])


class ClassifierTask(ImageTask):
    """The judging classifier: cross-entropy, light augmentation-free training; accuracy in the card."""

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        _, loss = model(images, labels)
        return loss

    def after_evaluation(self, model: nn.Module, step: int, run_directory: Path) -> None:
        """Classifiers draw nothing: no sample grid."""

    def card_metrics(self, model: nn.Module, report: RunReport) -> dict[str, float]:
        return {"val_accuracy": classifier_accuracy(model, self.val_data, self.batch_size), **super().card_metrics(model, report)}


@torch.no_grad()
def classifier_accuracy(model: nn.Module, data: ImageDataset, batch_size: int = 256) -> float:
    """Share of ``data`` the classifier labels correctly."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for images, labels in data.iter_eval_batches(batch_size):
        logits, _ = model(images.to(device))
        correct += int((logits.argmax(dim=1).cpu() == labels).sum())
    model.train(was_training)
    return correct / max(len(data), 1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """Mean over directions of the 1-D Wasserstein-1 distance between projections of ``a`` and ``b`` ``(N, D)``."""
    pa = (a @ projections.to(a.device)).sort(dim=0).values  # (N, P), sorted per direction
    pb = (b @ projections.to(b.device)).sort(dim=0).values
    return (pa - pb).abs().mean()


def image_grid(images: torch.Tensor, columns: int, padding: int = 2) -> Image.Image:
    """Images in ``[-1, 1]`` ``(B, C, H, W)`` tiled ``columns`` wide on a white background."""
    pixels = to_pixels(images)  # (B, C, H, W) uint8
    count, channels, height, width = pixels.shape
    rows = -(-count // columns)
    sheet = Image.new("L" if channels == 1 else "RGB", (columns * (width + padding) + padding, rows * (height + padding) + padding),
                      255 if channels == 1 else (255, 255, 255))
    for i, tile in enumerate(pixels):
        image = Image.fromarray(tile[0]) if channels == 1 else Image.fromarray(tile.transpose(1, 2, 0))
        sheet.paste(image, (padding + (i % columns) * (width + padding), padding + (i // columns) * (height + padding)))
    return sheet
