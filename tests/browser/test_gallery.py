"""The studio's Gallery view against a live server with two tiny image models: generate, compare, download, save."""

from __future__ import annotations

import base64
import io
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from aigc_studio.data.images import FASHION_MNIST_CLASSES
from aigc_studio.images.provenance import verify_png
from aigc_studio.models.diffusion import DiffusionConfig, UNet
from aigc_studio.models.model_dir import save_image_model
from aigc_studio.models.vae import VAE, VAEConfig
from aigc_studio.server.launcher import start_server

CLASSES = list(FASHION_MNIST_CLASSES)
START_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def gallery_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``aigc serve`` with the bundled text model and a randomly initialised tiny VAE and diffusion model."""

    import torch

    torch.manual_seed(0)
    workdir = tmp_path_factory.mktemp("gallery-server")
    vae = save_image_model(VAE(VAEConfig(image_size=16, class_names=CLASSES, latent_dim=4, base_channels=8, hidden_dim=16)),
                           workdir / "sketch-vae")
    unet = save_image_model(UNet(DiffusionConfig(image_size=16, class_names=CLASSES, base_channels=8, channel_mults=[1, 2],
                                                 num_train_timesteps=50)), workdir / "sketch-diffusion")
    env = {"AIGC_SERVER__MAX_IMAGE_N": "4"}
    with start_server(workdir, "--model", "e2e-copy", "--model", str(vae), "--model", str(unet), env=env,
                      timeout=START_TIMEOUT_S) as server:
        yield server.url


@pytest.fixture()
def gallery_page(browser, gallery_server: str) -> Iterator[object]:
    """The studio opened straight on #gallery, failing the test on any uncaught page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(30_000)
    page.goto(gallery_server + "/#gallery")
    page.wait_for_selector("body[data-ready='true']")
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _pixels(data_url: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix):]))).tobytes()


def test_generate_compare_download_and_save(gallery_page, gallery_server: str, tmp_path: Path):
    page = gallery_page
    assert page.locator("#view-gallery").is_visible() and page.locator("#view-create").is_hidden()
    page.wait_for_selector("#gallery-model option[value='sketch-vae']", state="attached")
    # the Create view offers text models only
    assert page.locator("#model option").all_inner_texts()[1:] == ["e2e-copy"]

    page.select_option("#gallery-model", "sketch-vae")
    page.select_option("#gallery-label", "sneaker")
    page.fill("#gallery-n", "2")
    page.fill("#gallery-seed", "5")
    assert page.locator("#gallery-steps").is_hidden()  # a VAE has no sampling steps
    page.click("#gallery-generate")
    page.wait_for_selector(".gallery-column .gallery-image")
    assert page.locator(".gallery-column").count() == 1 and page.locator(".gallery-image").count() == 2
    first_vae = page.locator(".gallery-image").first.get_attribute("src")

    page.select_option("#gallery-compare", "sketch-diffusion")
    assert page.locator("#gallery-steps").is_visible()
    page.fill("#gallery-steps", "2")
    page.click("#gallery-generate")
    page.wait_for_function("document.querySelectorAll('.gallery-column').length === 2")
    titles = page.locator(".gallery-column-title").all_inner_texts()
    assert titles == ["sketch-vae · vae · seed 5", "sketch-diffusion · diffusion · seed 5"]
    assert page.locator(".gallery-column").nth(1).locator(".gallery-image").count() == 2
    # same seed, same pixels (the PNG bytes differ: the record inside carries its creation time)
    assert _pixels(page.locator(".gallery-image").first.get_attribute("src")) == _pixels(first_vae)

    with page.expect_download() as download_info:
        page.locator(".gallery-column").nth(1).get_by_text("Download PNG").first.click()
    download = download_info.value
    assert download.suggested_filename == "sketch-diffusion-sneaker-seed5-0.png"
    saved = tmp_path / "sketch.png"
    download.save_as(saved)
    check = verify_png(saved)
    assert check.ok and check.record.label == "sneaker" and check.record.model_type == "aigc-diffusion"

    page.locator(".gallery-column").first.locator("[data-save='1']").click()
    page.wait_for_selector("#toast:not([hidden])")
    assert page.locator("#toast").inner_text() == "Saved to the library."
    assert page.locator(".gallery-column").first.locator("[data-save='1']").is_disabled()
    with urllib.request.urlopen(gallery_server + "/v1/library?task=sketch") as response:
        library = json.loads(response.read())
    assert library["total"] == 1 and library["data"][0]["tags"] == ["sketch", "sneaker"]


def test_server_refusals_show_in_the_gallery_and_views_switch(gallery_page):
    page = gallery_page
    page.wait_for_selector("#gallery-model option[value='sketch-vae']", state="attached")
    page.fill("#gallery-n", "9")
    page.click("#gallery-generate")
    page.wait_for_selector("#gallery-error:not([hidden])")
    assert "n must be at most 4" in page.locator("#gallery-error").inner_text()

    page.click(".nav-button[data-view='create']")
    assert page.locator("#view-gallery").is_hidden() and page.locator("#view-create").is_visible()
    page.click("[data-ui-language='zh']")
    page.click(".nav-button[data-view='gallery']")
    assert page.locator("#view-gallery").is_visible() and page.locator("#view-create").is_hidden()
    assert page.locator(".nav-button[data-view='gallery']").inner_text() == "图库"
    assert page.locator("#gallery-title").inner_text() == "设计草图"
