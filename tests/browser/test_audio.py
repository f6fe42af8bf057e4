"""The studio's Audio view against the live server: compose, listen, compose again, save, make an ad."""

from __future__ import annotations

import shutil

import pytest

from aigc_studio.models.registry import bundled_models

pytestmark = [
    pytest.mark.skipif("jingle" not in bundled_models(), reason="the bundled jingle model is not installed"),
    pytest.mark.skipif(shutil.which("fluidsynth") is None or shutil.which("espeak-ng") is None,
                       reason="fluidsynth or espeak-ng is missing; install them with `make audio-tools`"),
]


def test_compose_listen_again_save_and_ad(page) -> None:
    page.click(".nav-button[data-view='audio']")
    assert page.locator("#view-audio").is_visible() and page.locator("#view-create").is_hidden()
    page.select_option("#audio-meter", "6/8")
    page.fill("#audio-bars", "4")
    page.fill("#audio-n", "1")
    page.fill("#audio-seed", "3")
    page.click("#audio-compose")
    page.wait_for_selector(".audio-card audio")
    first = page.locator(".audio-card audio").first.get_attribute("src")
    assert first.startswith("data:audio/")
    page.click("#audio-again")  # the next seed
    page.wait_for_function(f"document.querySelector('.audio-card audio').src !== {first!r}")
    assert page.input_value("#audio-seed") == "4"
    page.get_by_text("Save", exact=True).first.click()
    page.wait_for_selector("#toast:not([hidden])")
    assert page.locator("#toast").inner_text() == "Saved to the library."
    page.get_by_text("Use for an ad").first.click()
    page.fill("#audio-ad-copy", "The Eagle: French food by the river.")
    page.click("#audio-ad-make")
    page.wait_for_selector("#audio-ad-result audio")
    assert page.locator("#audio-ad-result audio").get_attribute("src").startswith("data:audio/")
