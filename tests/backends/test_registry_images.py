"""The registry knows image model directories: kind "image", listed as such, never sent to transformers."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigc_studio.backends.registry import (
    detect_backend, list_models, load_backend, load_image_generator, model_kind,
)
from aigc_studio.errors import AigcError
from aigc_studio.models.classifier import ClassifierConfig, ImageClassifier
from aigc_studio.models.gan import GAN, GANConfig
from aigc_studio.models.model_dir import save_image_model
from aigc_studio.settings import Settings


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = GAN(GANConfig(image_size=8, class_names=["mug", "lamp"], latent_dim=4, g_channels=8, d_channels=8))
    return save_image_model(model, tmp_path_factory.mktemp("gan") / "mugs")


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = ImageClassifier(ClassifierConfig(image_size=8, class_names=["mug", "lamp"], base_channels=4, feature_dim=8))
    return save_image_model(model, tmp_path_factory.mktemp("classifier") / "judge")


def test_image_directories_are_kind_image_by_directory_and_by_table(gan_dir: Path, classifier_dir: Path):
    settings = Settings(models={"mugs": {"path": str(gan_dir)}})
    assert detect_backend(gan_dir) == "image" and detect_backend(classifier_dir) == "image"
    assert model_kind(gan_dir, settings) == "image" and model_kind("mugs", settings) == "image"
    assert model_kind("e2e-copy", settings) == "text" and model_kind("no-such-model", settings) == "text"


def test_image_generators_load_under_the_name_asked_for(gan_dir: Path):
    settings = Settings(models={"mugs-v1": {"path": str(gan_dir)}})
    by_table = load_image_generator("mugs-v1", settings)
    assert by_table.name == "mugs-v1" and by_table.model_type == "aigc-gan" and by_table.class_names == ["mug", "lamp"]
    assert load_image_generator(str(gan_dir), settings).name == "mugs"
    assert len(by_table.weights_sha256) == 64


def test_text_loaders_refuse_image_models_and_the_classifier_is_no_generator(gan_dir: Path, classifier_dir: Path):
    settings = Settings()
    with pytest.raises(AigcError, match="is an image model; draw with it through `aigc sketch") as error:
        load_backend(gan_dir, settings)
    assert error.value.param == "model"
    with pytest.raises(AigcError, match="image classifier that judges sketches"):
        load_image_generator(classifier_dir, settings)
    with pytest.raises(AigcError, match="not an image model"):
        load_image_generator("e2e-copy", settings)


def test_list_models_describes_image_models(gan_dir: Path):
    entries = {entry.name: entry for entry in list_models(Settings(models={"mugs": {"path": str(gan_dir)}}))}
    mugs = entries["mugs"]
    assert mugs.backend == "image" and mugs.location == str(gan_dir) and mugs.problem is None
    assert mugs.prompt_format is None and mugs.context_length is None and len(mugs.weights_sha256) == 64
    assert entries["e2e-copy"].backend == "builtin"
