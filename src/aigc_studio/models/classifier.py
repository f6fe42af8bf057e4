"""A small convolutional image classifier: the judge of the sketch models.

Trained by the project on the same prepared data set as the generators (``aigc train --arch classifier``),
it gives ``evaluation.images`` its two uses: class predictions (is a generated "sneaker" seen as a sneaker?)
and the penultimate-layer features on which the domain Fréchet distance and KID are computed (the role the
Inception network plays for natural images; Heusel et al. 2017, Bińkowski et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from aigc_studio.errors import AigcError


@dataclass
class ClassifierConfig:
    # data (set from the prepared data set, never in a recipe)
    image_size: int = 28  # a multiple of 4 (two 2x2 poolings)
    channels: int = 1
    class_names: list[str] = field(default_factory=lambda: [str(i) for i in range(10)])
    # model
    base_channels: int = 32
    feature_dim: int = 128  # the penultimate features FID/KID are computed on
    dropout: float = 0.3

    def __post_init__(self) -> None:
        if self.image_size % 4 or self.image_size < 8:
            raise AigcError(f"image_size must be a multiple of 4 and >= 8, got {self.image_size}", param="image_size")
        if self.base_channels <= 0 or self.feature_dim <= 0:
            raise AigcError("base_channels and feature_dim must be > 0", param="base_channels")
        if not 0.0 <= self.dropout < 1.0:
            raise AigcError(f"dropout must be in [0, 1), got {self.dropout}", param="dropout")
        if not self.class_names:
            raise AigcError("the model needs at least one class", param="class_names")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class ImageClassifier(nn.Module):
    """Two (conv, conv, pool) stages and a dense feature layer. ``forward(images, labels=None) -> (logits, loss)``."""

    model_type = "aigc-image-classifier"

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        c = config.base_channels

        def stage(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.body = nn.Sequential(stage(config.channels, c), stage(c, 2 * c))
        side = config.image_size // 4
        self.features = nn.Sequential(nn.Flatten(), nn.Dropout(config.dropout),
                                      nn.Linear(2 * c * side * side, config.feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.feature_dim, config.num_classes))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, feature_dim)`` of images in ``[-1, 1]``."""
        return self.features(self.body(images))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.head(self.embed(images))  # (B, num_classes)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return logits, loss
