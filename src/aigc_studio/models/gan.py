"""A class-conditional DCGAN-style generative adversarial network (Goodfellow et al., 2014; Radford et al.,
"DCGAN", 2016), stabilised the way small GANs are today:

- spectral normalisation of every discriminator layer (Miyato et al., "Spectral Normalization for GANs", 2018);
- the hinge loss (Lim & Ye, "Geometric GAN", 2017; as in SAGAN and BigGAN);
- a projection discriminator for the class (Miyato & Koyama, "cGANs with Projection Discriminator", 2018);
- an exponential moving average of the generator's weights, used for sampling (Karras et al., 2018;
  Yazici et al., "The Unusual Effectiveness of Averaging in GAN Training", 2019).

The networks only compute; the two-player training step (discriminator step, then generator step, then the
average) is ``training/image_tasks.GANTask.train_step``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from aigc_studio.errors import AigcError


@dataclass
class GANConfig:
    # data (set from the prepared data set, never in a recipe)
    image_size: int = 28  # a multiple of 4: the generator doubles a (size/4)^2 map twice
    channels: int = 1
    class_names: list[str] = field(default_factory=lambda: [str(i) for i in range(10)])
    # model
    latent_dim: int = 64
    g_channels: int = 64  # generator width at the smallest map (halved at each upsampling)
    d_channels: int = 64  # discriminator width after its first convolution (doubled at each downsampling)
    ema_decay: float = 0.999  # weight of the old average per step; ~1/(1 - decay) = 1000 steps of memory

    def __post_init__(self) -> None:
        if self.image_size % 4 or self.image_size < 8:
            raise AigcError(f"image_size must be a multiple of 4 and >= 8, got {self.image_size}", param="image_size")
        for name in ("latent_dim", "g_channels", "d_channels"):
            if getattr(self, name) <= 0:
                raise AigcError(f"{name} must be > 0, got {getattr(self, name)}", param=name)
        if not 0.0 <= self.ema_decay < 1.0:
            raise AigcError(f"ema_decay must be in [0, 1), got {self.ema_decay}", param="ema_decay")
        if not self.class_names:
            raise AigcError("the model needs at least one class", param="class_names")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class Generator(nn.Module):
    """``(z, y) -> image in [-1, 1]``: project to a ``size/4`` map, then two (upsample, conv, BN, ReLU) stages."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        c, self.s = config.g_channels, config.image_size // 4
        self.class_embedding = nn.Embedding(config.num_classes, config.latent_dim)
        self.project = nn.Sequential(
            nn.Linear(2 * config.latent_dim, 2 * c * self.s * self.s, bias=False),
            nn.BatchNorm1d(2 * c * self.s * self.s), nn.ReLU(),
        )

        def up(c_in: int, c_out: int) -> nn.Sequential:
            # nearest upsampling + 3x3 conv avoids the checkerboard of transposed convolutions (Odena et al., 2016)
            return nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU())

        self.body = nn.Sequential(up(2 * c, c), up(c, c // 2 or 1))
        self.to_image = nn.Conv2d(c // 2 or 1, config.channels, 3, padding=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([z, self.class_embedding(labels)], dim=1))
        h = h.view(len(z), -1, self.s, self.s)  # (B, 2c, s, s)
        return torch.tanh(self.to_image(self.body(h)))  # (B, C, 4s, 4s)


class Discriminator(nn.Module):
    """``(x, y) -> score``: spectrally normalised stride-2 convolutions and a projection of the class embedding.

    score = w . h(x) + embed(y) . h(x): the class term measures how well the features fit that class.
    """

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        c = config.d_channels
        self.body = nn.Sequential(
            spectral_norm(nn.Conv2d(config.channels, c, 3, padding=1)), nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(c, c, 4, stride=2, padding=1)), nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(c, 2 * c, 3, padding=1)), nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(2 * c, 2 * c, 4, stride=2, padding=1)), nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(2 * c, 4 * c, 3, padding=1)), nn.LeakyReLU(0.1),
        )
        self.linear = spectral_norm(nn.Linear(4 * c, 1))
        self.class_embedding = spectral_norm(nn.Embedding(config.num_classes, 4 * c))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.body(x).sum(dim=(2, 3))  # (B, 4c): global sum pooling, as in SN-GAN
        return self.linear(h).squeeze(1) + (self.class_embedding(labels) * h).sum(dim=1)  # (B,)


class GAN(nn.Module):
    """Generator, discriminator and the generator's moving average (``generator_ema``, used for sampling)."""

    model_type = "aigc-gan"

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.generator_ema.eval()  # batch statistics come from the averaged running stats, not the batch
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))  # saved: resuming keeps the warm-up

    def num_parameters(self) -> int:
        # The average is a copy of the generator, not parameters of its own.
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def train(self, mode: bool = True) -> GAN:
        super().train(mode)
        self.generator_ema.eval()  # always: its BatchNorm uses the running statistics it averaged
        return self

    def ema_decay_now(self) -> float:
        """The decay of the next update: ``min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates.

        The warm-up (as TensorFlow's ExponentialMovingAverage with ``num_updates``) lets the average follow the
        generator early on; a fixed 0.999 would keep ~80% of the random initial weights for 200 steps.
        """
        n = int(self.ema_updates)
        return min(self.config.ema_decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update_ema(self) -> None:
        """``ema = decay * ema + (1 - decay) * generator`` for weights; BatchNorm statistics are copied."""
        decay = self.ema_decay_now()
        self.ema_updates += 1
        for ema, live in zip(self.generator_ema.parameters(), self.generator.parameters()):
            ema.lerp_(live, 1.0 - decay)
        for ema, live in zip(self.generator_ema.buffers(), self.generator.buffers()):
            ema.copy_(live)

    @staticmethod
    def discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        """Hinge loss: push real scores above +1 and fake ones below -1."""
        return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()

    @staticmethod
    def generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
        """The generator raises the discriminator's score of its images."""
        return -fake_scores.mean()

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Images in ``[-1, 1]`` from the averaged generator for ``labels`` and latent ``noise`` ``(B, latent_dim)``."""
        return self.generator_ema(noise, labels)

    def noise_shape(self, n: int) -> tuple[int, ...]:
        """The shape of the noise :meth:`sample` takes for ``n`` images."""
        return (n, self.config.latent_dim)
