"""A class-conditional convolutional variational autoencoder (Kingma & Welling, "Auto-Encoding Variational
Bayes", 2014; conditional as in Sohn et al., "Learning Structured Output Representation using Deep
Conditional Generative Models", 2015), with the beta weight of Higgins et al. (2017).

The encoder maps an image and its class to a Gaussian over a small latent ``z``; the decoder maps ``z`` and the
class back to Bernoulli pixel logits. The loss is the negative evidence lower bound per image::

    loss = BCE(decoder(z, y), x) + beta * KL(q(z | x, y) || N(0, I)),   z = mu + sigma * eps

Images come in and go out in ``[-1, 1]``; the Bernoulli likelihood reads them as grey levels in ``[0, 1]``
(sharper than a Gaussian/MSE likelihood on Fashion-MNIST). Sampling draws ``z ~ N(0, I)`` and decodes it
with the wanted class; ``encode`` + ``decode`` make variations of a given sketch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from aigc_studio.errors import AigcError


@dataclass
class VAEConfig:
    # data (set from the prepared data set, never in a recipe)
    image_size: int = 28  # a multiple of 4: two stride-2 convolutions halve it twice
    channels: int = 1
    class_names: list[str] = field(default_factory=lambda: [str(i) for i in range(10)])
    # model
    latent_dim: int = 16  # small enough that every dimension is used; Fashion-MNIST needs few factors
    base_channels: int = 32  # width of the first convolution; the second has twice as many
    hidden_dim: int = 256  # the dense layer between the feature map and the latent
    beta: float = 1.0  # KL weight: 1 is the true ELBO; < 1 sharper reconstructions, > 1 a smoother latent

    def __post_init__(self) -> None:
        if self.image_size % 4 or self.image_size < 8:
            raise AigcError(f"image_size must be a multiple of 4 and >= 8, got {self.image_size}", param="image_size")
        for name in ("latent_dim", "base_channels", "hidden_dim"):
            if getattr(self, name) <= 0:
                raise AigcError(f"{name} must be > 0, got {getattr(self, name)}", param=name)
        if self.beta < 0:
            raise AigcError(f"beta must be >= 0, got {self.beta}", param="beta")
        if not self.class_names:
            raise AigcError("the model needs at least one class", param="class_names")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class Encoder(nn.Module):
    """``(x, y) -> (mu, logvar)``: two stride-2 convolutions, then a dense layer that also sees the class."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        c, s = config.base_channels, config.image_size // 4
        self.convs = nn.Sequential(
            nn.Conv2d(config.channels, c, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),
        )
        self.dense = nn.Sequential(nn.Linear(2 * c * s * s + config.hidden_dim, config.hidden_dim), nn.SiLU())
        self.to_stats = nn.Linear(config.hidden_dim, 2 * config.latent_dim)

    def forward(self, x: torch.Tensor, class_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.convs(x).flatten(1)  # (B, 2c * s * s)
        h = self.dense(torch.cat([h, class_emb], dim=1))  # (B, hidden)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)  # (B, latent) each
        return mu, logvar


class Decoder(nn.Module):
    """``(z, y) -> pixel logits``: a dense layer to a ``s x s`` map, then two stride-2 transposed convolutions."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        c, self.s = config.base_channels, config.image_size // 4
        self.dense = nn.Sequential(
            nn.Linear(config.latent_dim + config.hidden_dim, config.hidden_dim), nn.SiLU(),
            nn.Linear(config.hidden_dim, 2 * c * self.s * self.s), nn.SiLU(),
        )
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(c, config.channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
        h = self.dense(torch.cat([z, class_emb], dim=1))
        h = h.view(len(z), -1, self.s, self.s)  # (B, 2c, s, s)
        return self.deconvs(h)  # (B, C, H, W) logits


class VAE(nn.Module):
    """The conditional VAE. ``forward(images, labels) -> (reconstruction, loss)``; images in ``[-1, 1]``."""

    model_type = "aigc-vae"

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.class_embedding = nn.Embedding(config.num_classes, config.hidden_dim)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior ``q(z | x, y)`` as ``(mu, logvar)``."""
        return self.encoder(images, self.class_embedding(labels))

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in ``[-1, 1]``: the mean of the Bernoulli pixels, rescaled."""
        return torch.sigmoid(self.decoder(z, self.class_embedding(labels))) * 2 - 1

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruct ``images`` and return ``(reconstruction in [-1, 1], loss)``.

        The loss is per image (summed over pixels, averaged over the batch), in nats. In eval mode ``z`` is the
        posterior mean, so validation draws no random numbers and is the same every time.
        """
        class_emb = self.class_embedding(labels)
        mu, logvar = self.encoder(images, class_emb)
        # reparameterisation trick: z = mu + sigma * eps keeps the sample differentiable in mu and sigma
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        logits = self.decoder(z, class_emb)
        targets = (images + 1) / 2  # grey levels in [0, 1]
        reconstruction = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(images)
        # KL(N(mu, sigma^2) || N(0, 1)) in closed form, Kingma & Welling appendix B
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(images)
        return torch.sigmoid(logits) * 2 - 1, reconstruction + self.config.beta * kl

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Decode latent ``noise`` ``(B, latent_dim)`` (draws of ``N(0, I)``) for ``labels``: images in ``[-1, 1]``."""
        return self.decode(noise, labels)

    def noise_shape(self, n: int) -> tuple[int, ...]:
        """The shape of the noise :meth:`sample` takes for ``n`` images."""
        return (n, self.config.latent_dim)
