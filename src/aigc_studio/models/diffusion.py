"""A class-conditional denoising diffusion model: a small U-Net that predicts noise, and its noise schedule.

- Training (Ho et al., "Denoising Diffusion Probabilistic Models", 2020): noise an image to a random step
  ``t``, ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, and regress ``eps`` with the mean squared error.
- The cosine schedule of Nichol & Dhariwal ("Improved DDPM", 2021, eq. 17): ``abar_t = f(t)/f(0)``,
  ``f(t) = cos^2(((t/T + s)/(1 + s)) pi/2)``; it destroys small images less abruptly than a linear one.
- Classifier-free guidance (Ho & Salimans, 2022): the class is replaced by a "no class" token with
  probability ``label_dropout`` while training, and sampling mixes
  ``eps = eps(x, null) + w (eps(x, y) - eps(x, null))``.
- DDIM sampling (Song et al., "Denoising Diffusion Implicit Models", 2021, eq. 12) in 10-50 steps instead of
  1000; with ``eta = 0`` it is deterministic, so a seed (the starting noise) fixes the sketch.

As in diffusers, the network never samples and the scheduler holds no weights: :class:`UNet` is the denoiser,
:class:`DDIMScheduler` has ``add_noise`` (training), ``set_timesteps`` and ``step``; the sampling loop lives in
``aigc_studio.images.sampling``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from aigc_studio.errors import AigcError


@dataclass
class DiffusionConfig:
    # data (set from the prepared data set, never in a recipe)
    image_size: int = 28  # divisible by 2 ** (len(channel_mults) - 1)
    channels: int = 1
    class_names: list[str] = field(default_factory=lambda: [str(i) for i in range(10)])
    # network
    base_channels: int = 32
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 2])  # one U-Net level each; 28 -> 14 -> 7
    num_res_blocks: int = 1  # residual blocks per level (on the way down; one more on the way up)
    dropout: float = 0.0
    # diffusion
    num_train_timesteps: int = 1000
    label_dropout: float = 0.1  # share of training examples that see the "no class" token (for guidance)

    def __post_init__(self) -> None:
        levels = len(self.channel_mults)
        if levels < 1 or any(m <= 0 for m in self.channel_mults):
            raise AigcError(f"channel_mults must be a non-empty list of positive ints, got {self.channel_mults}",
                            param="channel_mults")
        if self.image_size % (2 ** (levels - 1)):
            raise AigcError(f"image_size {self.image_size} must be divisible by 2^{levels - 1} for {levels} U-Net levels; "
                            "change channel_mults", param="channel_mults")
        if self.base_channels <= 0 or self.base_channels % 8:
            raise AigcError(f"base_channels must be a positive multiple of 8 (group norm), got {self.base_channels}",
                            param="base_channels")
        if self.num_res_blocks < 1:
            raise AigcError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}", param="num_res_blocks")
        if not 0.0 <= self.label_dropout < 1.0:
            raise AigcError(f"label_dropout must be in [0, 1), got {self.label_dropout}", param="label_dropout")
        if not 0.0 <= self.dropout < 1.0:
            raise AigcError(f"dropout must be in [0, 1), got {self.dropout}", param="dropout")
        if self.num_train_timesteps < 10:
            raise AigcError(f"num_train_timesteps must be >= 10, got {self.num_train_timesteps}", param="num_train_timesteps")
        if not self.class_names:
            raise AigcError("the model needs at least one class", param="class_names")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps ``t`` ``(B,)`` -> ``(B, dim)`` (Vaswani et al., 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time+class embedding added in between; a 1x1 conv on the skip if widths differ."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # condition every channel on (t, y)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class UNet(nn.Module):
    """``(x_t, t, y) -> predicted noise``; ``y == num_classes`` is the "no class" token of classifier-free guidance.

    ``forward(noisy, timesteps, labels, noise=None) -> (predicted noise, loss)``, the loss only with ``noise``.
    """

    model_type = "aigc-diffusion"

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        c = config.base_channels
        emb_dim = 4 * c
        self.time_mlp = nn.Sequential(nn.Linear(c, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embedding = nn.Embedding(config.num_classes + 1, emb_dim)  # + the "no class" token
        self.conv_in = nn.Conv2d(config.channels, c, 3, padding=1)

        widths = [c * m for m in config.channel_mults]
        self.down = nn.ModuleList()
        skip_widths, width = [c], c
        for level, w in enumerate(widths):
            for _ in range(config.num_res_blocks):
                self.down.append(ResBlock(width, w, emb_dim, config.dropout))
                width = w
                skip_widths.append(width)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(width, width, 3, stride=2, padding=1))  # halve the map
                skip_widths.append(width)
        self.mid = nn.ModuleList([ResBlock(width, width, emb_dim, config.dropout),
                                  ResBlock(width, width, emb_dim, config.dropout)])
        self.up = nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            for _ in range(config.num_res_blocks + 1):
                self.up.append(ResBlock(width + skip_widths.pop(), w, emb_dim, config.dropout))
                width = w
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.norm_out = nn.GroupNorm(8, width)
        self.conv_out = nn.Conv2d(width, config.channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # start by predicting zero noise: a calm first few hundred steps
        nn.init.zeros_(self.conv_out.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def null_label(self) -> int:
        """The label id meaning "no class" (unconditional prediction)."""
        return self.config.num_classes

    def forward(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        emb = self.time_mlp(timestep_embedding(timesteps, self.config.base_channels)) + self.class_embedding(labels)
        h = self.conv_in(noisy)  # (B, c, H, W)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        for block in self.mid:
            h = block(h, emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        predicted = self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)
        loss = F.mse_loss(predicted, noise) if noise is not None else None
        return predicted, loss

    def noise_shape(self, n: int) -> tuple[int, ...]:
        """The shape of the starting noise ``x_T`` for ``n`` images."""
        return (n, self.config.channels, self.config.image_size, self.config.image_size)


class DDIMScheduler:
    """The cosine noise schedule, its forward process (``add_noise``) and the DDIM update (``step``). No weights.

    Args:
        num_train_timesteps: the ``T`` the model was trained with.
        cosine_offset: ``s`` of Nichol & Dhariwal (0.008) keeps ``beta_t`` from being too small near ``t = 0``.
    """

    def __init__(self, num_train_timesteps: int = 1000, cosine_offset: float = 0.008) -> None:
        self.num_train_timesteps = num_train_timesteps
        steps = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
        f = torch.cos((steps + cosine_offset) / (1 + cosine_offset) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)  # clipped as in the paper, to avoid a singularity at t = T
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0).float()  # abar_t for t = 0 .. T-1
        self.timesteps = torch.arange(num_train_timesteps - 1, -1, -1)

    def add_noise(self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (DDPM eq. 4)."""
        abar = self.alphas_cumprod.to(images.device)[timesteps].view(-1, 1, 1, 1)
        return abar.sqrt() * images + (1 - abar).sqrt() * noise

    def set_timesteps(self, num_inference_steps: int, *, strength: float = 1.0) -> torch.Tensor:
        """The descending steps to visit: ``num_inference_steps`` evenly spaced ones, the first ones dropped when
        ``strength < 1`` (image-to-image starts from a partly noised image at ``t ~ strength * T``).

        Raises:
            AigcError: steps outside ``[1, T]`` or strength outside ``(0, 1]``.
        """
        if not 1 <= num_inference_steps <= self.num_train_timesteps:
            raise AigcError(f"steps must be in [1, {self.num_train_timesteps}], got {num_inference_steps}", param="steps")
        if not 0.0 < strength <= 1.0:
            raise AigcError(f"strength must be in (0, 1], got {strength}", param="strength")
        ratio = self.num_train_timesteps / num_inference_steps
        timesteps = (torch.arange(num_inference_steps - 1, -1, -1).float() * ratio).round().long()
        keep = max(1, round(num_inference_steps * strength))
        self.timesteps = timesteps[num_inference_steps - keep:]
        return self.timesteps

    def step(
        self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, *, eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One DDIM update ``x_t -> x_prev`` given the predicted noise (Song et al. 2021, eq. 12)."""
        # 1. the previous step on the visited grid (or "before the start": abar = 1, a clean image)
        position = (self.timesteps == timestep).nonzero()
        is_last = int(position[0, 0]) == len(self.timesteps) - 1 if len(position) else True
        prev_t = -1 if is_last else int(self.timesteps[int(position[0, 0]) + 1])
        abar_t = self.alphas_cumprod[timestep]
        abar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
        # 2. the predicted clean image x_0 (eq. 12's "predicted x_0"), clipped to the data range
        x0 = ((sample - (1 - abar_t).sqrt() * model_output) / abar_t.sqrt()).clamp(-1, 1)
        eps = (sample - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()  # noise consistent with the clipped x_0
        # 3. sigma_t (eq. 16): eta = 0 is deterministic DDIM, eta = 1 is DDPM-like
        sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()
        # 4. the "direction pointing to x_t" and the new sample
        direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
        prev = abar_prev.sqrt() * x0 + direction
        if eta > 0:
            prev = prev + sigma * torch.randn(sample.shape, generator=generator, device=sample.device)
        return prev
