"""The networks and the diffusion scheduler on 8x8 images: shapes, losses, and DDIM's algebra."""

from __future__ import annotations

import pytest
import torch

from aigc_studio.errors import AigcError
from aigc_studio.images.sampling import SamplingOptions, draw_noise, sample
from aigc_studio.models.classifier import ClassifierConfig, ImageClassifier
from aigc_studio.models.diffusion import DDIMScheduler, DiffusionConfig, UNet
from aigc_studio.models.gan import GAN, GANConfig
from aigc_studio.models.vae import VAE, VAEConfig

CLASSES = ["a", "b", "c"]


def batch(channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.rand(4, channels, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize("channels", [1, 3])
def test_vae_reconstructs_in_range_with_a_positive_loss(channels: int) -> None:
    model = VAE(VAEConfig(image_size=8, channels=channels, class_names=CLASSES, latent_dim=3, base_channels=4, hidden_dim=8))
    images, labels = batch(channels)
    reconstruction, loss = model(images, labels)
    assert reconstruction.shape == images.shape and reconstruction.abs().max() <= 1
    assert loss.item() > 0
    model.eval()  # validation uses the posterior mean: no randomness
    assert torch.equal(model(images, labels)[1], model(images, labels)[1])


def test_gan_generator_and_discriminator_shapes_and_hinge_losses() -> None:
    model = GAN(GANConfig(image_size=8, class_names=CLASSES, latent_dim=5, g_channels=4, d_channels=4))
    images, labels = batch()
    fake = model.generator(torch.randn(4, 5), labels)
    assert fake.shape == (4, 1, 8, 8) and fake.abs().max() <= 1
    assert model.discriminator(fake, labels).shape == (4,)
    # hinge: no discriminator loss once real scores exceed +1 and fake ones are below -1
    assert model.discriminator_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0
    assert model.num_parameters() < sum(p.numel() for p in model.parameters())  # the average is not trained


def test_gan_moving_average_moves_towards_the_generator() -> None:
    model = GAN(GANConfig(image_size=8, class_names=CLASSES, g_channels=4, d_channels=4, ema_decay=0.5))
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.generator_ema.parameters()]
    decay = model.ema_decay_now()
    assert decay == min(0.5, 1 / 10)  # warm-up: the first update follows the generator closely
    model.update_ema()
    for old, ema, live in zip(before, model.generator_ema.parameters(), model.generator.parameters()):
        assert torch.allclose(ema, decay * old + (1 - decay) * live)
    for _ in range(20):
        model.update_ema()
    assert model.ema_decay_now() == 0.5 and int(model.ema_updates) == 21  # then the configured decay


def test_unet_predicts_noise_shaped_output_and_its_loss() -> None:
    model = UNet(DiffusionConfig(image_size=8, class_names=CLASSES, base_channels=8, channel_mults=[1, 2]))
    images, labels = batch()
    noise = torch.randn_like(images)
    predicted, loss = model(images, torch.tensor([0, 10, 500, 999]), labels, noise)
    assert predicted.shape == images.shape
    assert loss is not None and torch.isclose(loss, (predicted - noise).pow(2).mean())
    null = torch.full_like(labels, model.null_label)  # the guidance token is a valid input
    assert model(images, torch.zeros(4, dtype=torch.long), null)[1] is None


def test_diffusion_config_rejects_sizes_the_unet_cannot_halve() -> None:
    with pytest.raises(AigcError, match="divisible"):
        DiffusionConfig(image_size=12, channel_mults=[1, 2, 2, 2])


def test_cosine_schedule_goes_from_almost_clean_to_almost_pure_noise() -> None:
    scheduler = DDIMScheduler(1000)
    abar = scheduler.alphas_cumprod
    assert abar[0] > 0.999 and abar[-1] < 1e-3 and bool((abar[1:] <= abar[:-1]).all())


def test_ddim_step_with_the_true_noise_recovers_the_clean_image() -> None:
    scheduler = DDIMScheduler(100)
    timesteps = scheduler.set_timesteps(10)
    clean, noise = torch.rand(2, 1, 8, 8) * 1.6 - 0.8, torch.randn(2, 1, 8, 8)
    x = scheduler.add_noise(clean, noise, torch.full((2,), int(timesteps[0])))
    for t in timesteps.tolist():
        x = scheduler.step(noise_at(x, clean, scheduler, t), t, x)
    assert torch.allclose(x, clean, atol=1e-4)


def noise_at(x: torch.Tensor, clean: torch.Tensor, scheduler: DDIMScheduler, t: int) -> torch.Tensor:
    """The exact noise that makes x = sqrt(abar) clean + sqrt(1 - abar) eps (a perfect denoiser)."""
    abar = scheduler.alphas_cumprod[t]
    return (x - abar.sqrt() * clean) / (1 - abar).sqrt()


def test_strength_keeps_only_the_last_part_of_the_schedule() -> None:
    scheduler = DDIMScheduler(1000)
    assert len(scheduler.set_timesteps(20, strength=0.5)) == 10
    with pytest.raises(AigcError, match="strength"):
        scheduler.set_timesteps(20, strength=0.0)


@pytest.mark.parametrize("model", [
    VAE(VAEConfig(image_size=8, class_names=CLASSES, latent_dim=3, base_channels=4, hidden_dim=8)),
    GAN(GANConfig(image_size=8, class_names=CLASSES, latent_dim=5, g_channels=4, d_channels=4)),
    UNet(DiffusionConfig(image_size=8, class_names=CLASSES, base_channels=8, channel_mults=[1, 2], num_train_timesteps=20)),
], ids=["vae", "gan", "diffusion"])
def test_every_generator_samples_images_in_range_deterministically_from_its_noise(model: torch.nn.Module) -> None:
    model.eval()
    labels = torch.tensor([0, 2, 1])
    noise = draw_noise(model, 3, seed=5)
    first = sample(model, labels, noise, SamplingOptions(steps=4))
    assert first.shape == (3, 1, 8, 8) and first.abs().max() <= 1
    assert torch.equal(first, sample(model, labels, draw_noise(model, 3, seed=5), SamplingOptions(steps=4)))
    assert torch.equal(draw_noise(model, 2, seed=5), noise[:2])  # sketch i does not depend on n


def test_classifier_gives_logits_features_and_a_loss() -> None:
    model = ImageClassifier(ClassifierConfig(image_size=8, class_names=CLASSES, base_channels=4, feature_dim=6))
    images, labels = batch()
    logits, loss = model(images, labels)
    assert logits.shape == (4, 3) and model.embed(images).shape == (4, 6) and loss is not None
