"""POST /v1/images/generations: OpenAI's shape, PNGs with provenance, seeds, caps, moderation, audit, listing."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image, PngImagePlugin

from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.data.images import FASHION_MNIST_CLASSES
from aigc_studio.images.provenance import PROVENANCE_KEY, ImageProvenance, c2pa_available, png_bytes, verify_png
from aigc_studio.models.diffusion import DiffusionConfig, UNet
from aigc_studio.models.model_dir import save_image_model
from aigc_studio.models.vae import VAE, VAEConfig
from aigc_studio.server.app import create_app
from aigc_studio.settings import Settings
from aigc_studio.store.audit import AuditLog
from aigc_studio.store.library import ContentLibrary

CLASSES = list(FASHION_MNIST_CLASSES)
PATH = "/v1/images/generations"


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A randomly initialised tiny VAE and diffusion model (16x16, the Fashion-MNIST classes), saved as model dirs."""
    import torch

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("image-models")
    vae = VAE(VAEConfig(image_size=16, class_names=CLASSES, latent_dim=4, base_channels=8, hidden_dim=16))
    unet = UNet(DiffusionConfig(image_size=16, class_names=CLASSES, base_channels=8, channel_mults=[1, 2],
                                num_train_timesteps=50))
    return {"sketch-vae": save_image_model(vae, root / "sketch-vae"),
            "sketch-diffusion": save_image_model(unet, root / "sketch-diffusion")}


@pytest.fixture(scope="module")
def image_client(tmp_path_factory: pytest.TempPathFactory, backend: BuiltinBackend,
                 image_dirs: dict[str, Path]) -> Iterator[TestClient]:
    """An app serving the bundled text model and both tiny image models, at most 4 images per request."""
    directory = tmp_path_factory.mktemp("images-server")
    settings = Settings(database_url=f"sqlite:///{directory / 'aigc.db'}", vault_key_file=directory / "vault.key",
                        server={"rate_limit_per_minute": 0, "max_image_n": 4},
                        watermark={"key_file": directory / "watermark.key"}, c2pa_directory=directory / "c2pa")
    app = create_app(settings, models=[backend, str(image_dirs["sketch-vae"]), str(image_dirs["sketch-diffusion"])])
    with TestClient(app) as client:
        yield client


def _decode(item: dict) -> tuple[bytes, Image.Image]:
    png = base64.b64decode(item["b64_json"])
    return png, Image.open(io.BytesIO(png))


def test_generation_returns_pngs_carrying_their_provenance(image_client):
    response = image_client.post(PATH, json={"model": "sketch-vae", "prompt": "a red ankle boot", "n": 3, "seed": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["created"], int) and body["model"] == "sketch-vae" and body["seed"] == 7
    assert len(body["data"]) == 3
    for index, item in enumerate(body["data"]):
        assert item["revised_prompt"] == "ankle-boot"
        png, image = _decode(item)
        assert png.startswith(b"\x89PNG") and image.size == (16, 16) and image.mode == "L"
        record = json.loads(image.text[PROVENANCE_KEY])
        assert record == item["provenance"]
        assert record["label"] == "ankle-boot" and record["label_index"] == 9 and record["seed"] == 7
        assert record["index"] == index and record["model_type"] == "aigc-vae" and len(record["model_sha256"]) == 64
        result = verify_png(png)
        assert result.ok, result.message
    assert body["audit_record_id"] >= 1


def test_same_seed_same_pixels_and_other_seed_differs(image_client):
    request = {"model": "sketch-diffusion", "prompt": "sneaker", "n": 2, "seed": 11, "steps": 3, "guidance": 1.5}
    first, again = (image_client.post(PATH, json=request).json() for _ in range(2))
    other = image_client.post(PATH, json={**request, "seed": 12}).json()
    pixels = lambda body: [_decode(item)[1].tobytes() for item in body["data"]]  # noqa: E731
    assert pixels(first) == pixels(again)
    assert pixels(first) != pixels(other)
    assert first["data"][0]["provenance"]["parameters"]["steps"] == 3
    assert first["data"][0]["provenance"]["parameters"]["guidance"] == 1.5


def test_larger_sizes_are_upscaled_and_record_their_size(image_client):
    body = image_client.post(PATH, json={"model": "sketch-vae", "prompt": "dress", "size": "64x64", "seed": 1}).json()
    png, image = _decode(body["data"][0])
    assert image.size == (64, 64) and body["data"][0]["provenance"]["parameters"]["size"] == 64
    assert verify_png(png).ok


def test_without_model_or_seed_the_first_image_model_answers_and_reports_its_seed(image_client):
    body = image_client.post(PATH, json={"prompt": "Trousers for summer"}).json()
    assert body["model"] == "sketch-vae" and isinstance(body["seed"], int)
    assert body["data"][0]["revised_prompt"] == "trouser"
    assert body["data"][0]["provenance"]["seed"] == body["seed"]


def test_audit_record_holds_the_request(image_client):
    body = image_client.post(PATH, json={"model": "sketch-vae", "prompt": "bag", "n": 2, "seed": 5}).json()
    database = image_client.app.state.server.database
    (record,) = AuditLog(database).find_by_content_hash(body["data"][0]["provenance"]["pixels_sha256"])
    assert record.id == body["audit_record_id"] and record.kind == "image" and record.model == "sketch-vae" and record.seed == 5 and record.prompt == "bag"
    assert record.params["label"] == "bag" and record.params["n"] == 2
    assert [json.loads(output) for output in record.outputs] == [item["provenance"] for item in body["data"]]


@pytest.mark.parametrize("request_body, param, words", [
    ({"prompt": "a teapot"}, "prompt", "ankle-boot"),
    ({"prompt": "a dress and a coat"}, "prompt", "several"),
    ({"prompt": "bag", "n": 5}, "n", "at most 4"),
    ({"prompt": "bag", "size": "1024x1024"}, "size", "out of range"),
    ({"prompt": "bag", "size": "64x32"}, "size", "square"),
    ({"prompt": "bag", "size": "big"}, "size", "WxH"),
    ({"prompt": "bag", "size": "8x8"}, "size", "out of range"),
    ({"prompt": "bag", "response_format": "url"}, "response_format", "b64_json"),
    ({"prompt": "bag", "steps": 10}, "steps", "diffusion models only"),
    ({"prompt": "bag", "model": "sketch-diffusion", "steps": 1000}, "steps", "between 1 and 100"),
    ({"prompt": "bag", "model": "sketch-diffusion", "guidance": 99}, "guidance", "guidance"),
])
def test_bad_requests_are_400_naming_the_parameter(image_client, assert_error, request_body, param, words):
    error = assert_error(image_client.post(PATH, json=request_body), 400, param=param)
    assert words in error["message"]


def test_unknown_or_text_models_are_404(image_client, assert_error):
    error = assert_error(image_client.post(PATH, json={"prompt": "bag", "model": "nope"}), 404, code="model_not_found")
    assert "sketch-vae" in error["message"]
    error = assert_error(image_client.post(PATH, json={"prompt": "bag", "model": "e2e-copy"}), 404)
    assert "text model" in error["message"]


def test_blocked_prompts_are_refused_by_moderation(image_client, assert_error):
    error = assert_error(image_client.post(PATH, json={"prompt": "a bag to hide cocaine in"}), 400,
                         code="content_policy_violation")
    assert "illicit" in error["message"]


def test_models_list_shows_image_models_with_their_categories(image_client):
    cards = {card["id"]: card for card in image_client.get("/v1/models").json()["data"]}
    assert cards["e2e-copy"]["kind"] == "text"
    vae, diffusion = cards["sketch-vae"], cards["sketch-diffusion"]
    assert vae["kind"] == "image" and vae["backend"] == "image" and vae["model_type"] == "aigc-vae"
    assert diffusion["model_type"] == "aigc-diffusion" and diffusion["class_names"] == CLASSES
    assert vae["context_length"] is None and len(vae["weights_sha256"]) == 64
    assert set(image_client.get("/healthz").json()["models"]) == {"e2e-copy", "sketch-vae", "sketch-diffusion"}


def test_a_server_without_image_models_says_how_to_load_one(client, assert_error):
    error = assert_error(client.post(PATH, json={"prompt": "bag"}), 404, code="model_not_found")
    assert "--model fashion-sketch" in error["message"]


def test_a_sketch_saves_to_the_library_with_its_record_and_comes_back_as_png(image_client, assert_error):
    body = image_client.post(PATH, json={"model": "sketch-vae", "prompt": "coat", "seed": 3}).json()
    item = body["data"][0]
    response = image_client.post("/v1/images/library", json={"b64_json": item["b64_json"], "tags": ["winter"]})
    assert response.status_code == 201, response.text
    saved = response.json()
    assert saved["task"] == "sketch" and saved["tags"] == ["winter"] and "coat sketch" in saved["title"]
    listed = image_client.get("/v1/library", params={"task": "sketch"}).json()
    assert saved["id"] in [entry["id"] for entry in listed["data"]]
    png = image_client.get(f"/v1/images/library/{saved['id']}.png")
    assert png.headers["content-type"] == "image/png" and png.content == base64.b64decode(item["b64_json"])
    stored = ContentLibrary(image_client.app.state.server.database).get(saved["id"])
    assert stored.request["provenance"] == item["provenance"] and stored.audit_record_id == body["audit_record_id"]


def test_only_intact_sketches_are_saved(image_client, assert_error):
    item = image_client.post(PATH, json={"model": "sketch-vae", "prompt": "coat", "seed": 4}).json()["data"][0]
    _, image = _decode(item)
    record = ImageProvenance.model_validate(item["provenance"])
    edited = image.copy()
    edited.putpixel((0, 0), 255 - edited.getpixel((0, 0)))
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PROVENANCE_KEY, json.dumps(item["provenance"]))  # the original record on changed pixels
    buffer = io.BytesIO()
    edited.save(buffer, format="PNG", pnginfo=info)
    error = assert_error(image_client.post("/v1/images/library", json={"b64_json": base64.b64encode(buffer.getvalue()).decode()}),
                         400, param="b64_json")
    assert "pixels were changed" in error["message"]
    reencoded = png_bytes(image, record)  # the same pixels written again: still the sketch that was made
    assert image_client.post("/v1/images/library", json={"b64_json": base64.b64encode(reencoded).decode()}).status_code == 201
    assert_error(image_client.post("/v1/images/library", json={"b64_json": "not base64!"}), 400, param="b64_json")
    text_item = image_client.post("/v1/library", json={"task": "ad-copy", "title": "t", "text": "x"}).json()
    assert_error(image_client.get(f"/v1/images/library/{text_item['id']}.png"), 404)


def test_images_larger_than_a_sketch_are_refused_from_their_header(image_client, assert_error):
    buffer = io.BytesIO()
    Image.new("L", (1024, 8)).save(buffer, format="PNG")
    error = assert_error(image_client.post("/v1/images/library", json={"b64_json": base64.b64encode(buffer.getvalue()).decode()}),
                         400, param="b64_json")
    assert "1024x8" in error["message"]
    not_an_image = base64.b64encode(b"plain text, not a PNG").decode()
    assert_error(image_client.post("/v1/images/library", json={"b64_json": not_an_image}), 400, param="b64_json")


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def _edited(item: dict) -> Image.Image:
    """The image of ``item`` with one pixel inverted."""
    _, image = _decode(item)
    edited = image.copy()
    edited.putpixel((0, 0), 255 - edited.getpixel((0, 0)))
    return edited


def test_provenance_verify_traces_every_image_of_a_request_to_its_audit_record(image_client):
    body = image_client.post(PATH, json={"model": "sketch-vae", "prompt": "sandal", "n": 3, "seed": 11}).json()
    for item in body["data"]:
        verified = image_client.post("/v1/provenance/verify", json={"image": item["b64_json"]}).json()
        assert verified["produced"] and verified["match"] == "exact", verified
        assert [record["record_id"] for record in verified["records"]] == [body["audit_record_id"]]
        assert verified["records"][0]["kind"] == "image" and verified["records"][0]["model"] == "sketch-vae"
        assert verified["image"]["status"] == "verified" and verified["image"]["record"] == item["provenance"]


def test_provenance_verify_tells_edited_foreign_and_unmarked_images_apart(image_client):
    item = image_client.post(PATH, json={"model": "sketch-vae", "prompt": "shirt", "seed": 12}).json()["data"][0]
    edited = _edited(item)
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PROVENANCE_KEY, json.dumps(item["provenance"]))  # the original record on changed pixels
    buffer = io.BytesIO()
    edited.save(buffer, format="PNG", pnginfo=info)
    modified = image_client.post("/v1/provenance/verify", json={"image": _b64(buffer.getvalue())}).json()
    assert modified["match"] == "modified" and not modified["produced"] and modified["records"] == []
    assert "pixels were changed" in modified["image"]["message"]
    # A record written for other pixels (another installation, or `aigc sketch`): a claim this audit log cannot back.
    record = ImageProvenance.model_validate(item["provenance"])
    foreign = image_client.post("/v1/provenance/verify", json={"image": _b64(png_bytes(edited, record))}).json()
    assert foreign["match"] == "record" and foreign["records"] == [] and foreign["image"]["status"] == "verified"
    plain = io.BytesIO()
    edited.save(plain, format="PNG")
    unmarked = image_client.post("/v1/provenance/verify", json={"image": _b64(plain.getvalue())}).json()
    assert unmarked["match"] == "none" and not unmarked["produced"] and unmarked["image"]["status"] == "missing"


@pytest.mark.parametrize("request_body, status, param, words", [
    ({"image": "not base64!"}, 400, "image", "not valid base64"),
    ({"image": base64.b64encode(b"plain text, not a PNG").decode()}, 400, "image", "not a readable image"),
    ({"text": "a text", "image": "aGk="}, 422, None, 'exactly one of "text" or "image"'),
    ({}, 422, None, 'exactly one of "text" or "image"'),
])
def test_provenance_verify_refuses_bad_input(image_client, assert_error, request_body, status, param, words):
    error = assert_error(image_client.post("/v1/provenance/verify", json=request_body), status, param=param)
    assert words in error["message"]


@pytest.mark.skipif(not c2pa_available(), reason="c2pa-python is not installed (optional extra)")
def test_served_sketches_carry_a_valid_c2pa_manifest_unless_turned_off(image_client, image_dirs, tmp_path):
    item = image_client.post(PATH, json={"model": "sketch-vae", "prompt": "bag", "seed": 13}).json()["data"][0]
    png, _ = _decode(item)
    assert verify_png(png).c2pa_state == "Valid"
    verified = image_client.post("/v1/provenance/verify", json={"image": item["b64_json"]}).json()
    assert verified["match"] == "exact" and verified["image"]["c2pa_state"] == "Valid"
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'aigc.db'}", vault_key_file=tmp_path / "vault.key",
                        server={"rate_limit_per_minute": 0, "image_c2pa": False}, c2pa_directory=tmp_path / "c2pa")
    with TestClient(create_app(settings, models=[str(image_dirs["sketch-vae"])])) as unsigned_client:
        unsigned = unsigned_client.post(PATH, json={"prompt": "bag", "seed": 13}).json()["data"][0]
    png, _ = _decode(unsigned)
    assert verify_png(png).ok and verify_png(png).c2pa_state is None and not (tmp_path / "c2pa").exists()
    assert unsigned["provenance"]["pixels_sha256"] == item["provenance"]["pixels_sha256"]
