"""Sampling loops for the image models: one function, :func:`sample`, turns ``(labels, noise)`` into images.

Every model is a deterministic map from a noise tensor and a class to an image (the VAE and GAN decode a
latent; the diffusion model runs DDIM with ``eta = 0`` from ``x_T``), so a seed fixes the sketch and noise can
be interpolated. Variations of a given image start from it: the VAE encodes it, the diffusion model noises it
part of the way (SDEdit, Meng et al. 2022) and denoises from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from aigc_studio.errors import AigcError
from aigc_studio.models.classifier import ImageClassifier
from aigc_studio.models.diffusion import DDIMScheduler, UNet
from aigc_studio.models.gan import GAN
from aigc_studio.models.vae import VAE


@dataclass
class SamplingOptions:
    """How the diffusion model samples (the VAE and GAN ignore these).

    Attributes:
        steps: DDIM steps (10-50: more is slower and a little cleaner).
        guidance: classifier-free guidance weight ``w``; 1 is plain conditional sampling, 2-4 sharper classes.
        eta: DDIM noise; 0 is deterministic (a seed fixes the sketch).
    """

    steps: int = 25
    guidance: float = 2.0
    eta: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 1000:
            raise AigcError(f"steps must be in [1, 1000], got {self.steps}", param="steps")
        if not 0.0 <= self.guidance <= 20.0:
            raise AigcError(f"guidance must be in [0, 20], got {self.guidance}", param="guidance")
        if not 0.0 <= self.eta <= 1.0:
            raise AigcError(f"eta must be in [0, 1], got {self.eta}", param="eta")


def draw_noise(model: nn.Module, n: int, seed: int) -> torch.Tensor:
    """The model's starting noise for ``n`` images from ``seed``; row ``i`` is the same whatever ``n`` is."""
    if isinstance(model, ImageClassifier):
        raise AigcError("this is an image classifier (the judge of evaluations), not a generator; pass a VAE, GAN or "
                        "diffusion model", param="model")
    generator = torch.Generator().manual_seed(seed)
    row_shape = model.noise_shape(1)[1:]
    # One draw per row: torch fills large tensors in vectorised chunks, so a single (n, ...) draw would make row i
    # depend on n; row by row, the first rows of a longer batch are those of a shorter one.
    return torch.stack([torch.randn(row_shape, generator=generator) for _ in range(n)])


@torch.no_grad()
def sample(model: nn.Module, labels: torch.Tensor, noise: torch.Tensor, options: SamplingOptions | None = None) -> torch.Tensor:
    """Images ``(B, C, H, W)`` in ``[-1, 1]`` for ``labels`` ``(B,)`` from ``noise`` (see :func:`draw_noise`)."""
    device = next(model.parameters()).device
    labels, noise = labels.to(device), noise.to(device)
    if isinstance(model, (VAE, GAN)):
        return model.sample(labels, noise)
    if isinstance(model, UNet):
        return ddim_sample(model, labels, noise, options or SamplingOptions())
    raise AigcError(f"{type(model).__name__} does not generate images; pass a VAE, GAN or diffusion model", param="model")


@torch.no_grad()
def ddim_sample(
    unet: UNet, labels: torch.Tensor, noise: torch.Tensor, options: SamplingOptions, *,
    init_images: torch.Tensor | None = None, strength: float = 1.0, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDIM with classifier-free guidance from ``x_T = noise``, or from ``init_images`` noised to ``strength``."""
    scheduler = DDIMScheduler(unet.config.num_train_timesteps)
    timesteps = scheduler.set_timesteps(options.steps, strength=strength)
    if init_images is None:
        x = noise
    else:
        # start part of the way down the chain: the given image, noised to the first visited step
        x = scheduler.add_noise(init_images.to(noise.device), noise, timesteps[:1].repeat(len(noise)).to(noise.device))
    null = torch.full_like(labels, unet.null_label)
    for t in timesteps.tolist():
        steps = torch.full((len(x),), t, device=x.device, dtype=torch.long)
        if options.guidance == 1.0:
            eps, _ = unet(x, steps, labels)
        else:
            # one batched pass for the conditional and the unconditional prediction
            both, _ = unet(torch.cat([x, x]), torch.cat([steps, steps]), torch.cat([labels, null]))
            conditional, unconditional = both.chunk(2)
            eps = unconditional + options.guidance * (conditional - unconditional)
        x = scheduler.step(eps, t, x, eta=options.eta, generator=generator)
    return x.clamp(-1, 1)


@torch.no_grad()
def variations(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor, strength: float,
    options: SamplingOptions | None = None,
) -> torch.Tensor:
    """Variations of ``images`` (one row of ``noise`` each): ``strength`` 0 keeps the image, 1 ignores it.

    Raises:
        AigcError: the model has no way to start from an image (a GAN has no encoder), or ``strength`` is out of range.
    """
    if not 0.0 < strength <= 1.0:
        raise AigcError(f"strength must be in (0, 1], got {strength}", param="strength")
    device = next(model.parameters()).device
    images, labels, noise = images.to(device), labels.to(device), noise.to(device)
    if isinstance(model, VAE):
        mu, _ = model.encode(images, labels)
        return model.decode((1 - strength) * mu + strength * noise, labels)  # slide from the image's code to a fresh draw
    if isinstance(model, UNet):
        return ddim_sample(model, labels, noise, options or SamplingOptions(), init_images=images, strength=strength)
    raise AigcError(f"a {type(model).__name__} cannot make variations of a given image (it has no encoder); "
                    "use a VAE or diffusion model for --from", param="from")
