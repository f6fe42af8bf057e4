"""PNG generation records round-trip; edited or stripped images fail verification; C2PA when available."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aigc_studio.errors import AigcError
from aigc_studio.images.pipeline import generate_sketches, save_sketches
from aigc_studio.images.provenance import C2paSigner, ImageProvenance, c2pa_available, png_bytes, verify_png, write_png
from aigc_studio.models.model_dir import weights_sha256


def record(**changes: object) -> ImageProvenance:
    fields = {"model": "m", "model_type": "aigc-vae", "model_sha256": "0" * 64, "label": "bag", "label_index": 8,
              "seed": 3, "parameters": {"steps": 25}}
    return ImageProvenance(**{**fields, **changes})


def image() -> Image.Image:
    return Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)


def test_record_round_trips_through_the_png(tmp_path: Path) -> None:
    path = write_png(tmp_path / "a.png", image(), record())
    result = verify_png(path)
    assert result.ok and result.status == "verified"
    assert result.record is not None
    assert result.record.model_dump(exclude={"pixels_sha256"}) == record(created=result.record.created).model_dump(exclude={"pixels_sha256"})
    assert verify_png(path.read_bytes()).ok  # bytes work as well as paths


def test_a_modified_pixel_fails_verification(tmp_path: Path) -> None:
    data = png_bytes(image(), record())
    with Image.open(io.BytesIO(data)) as opened:
        edited = opened.copy()
        text = opened.info["aigc:provenance"]
    edited.putpixel((3, 3), 255 - edited.getpixel((3, 3)))
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("aigc:provenance", text)  # the record copied over unchanged
    edited.save(tmp_path / "edited.png", pnginfo=info)
    result = verify_png(tmp_path / "edited.png")
    assert not result.ok and result.status == "modified" and "pixels were changed" in result.message


def test_stripped_metadata_is_reported_as_missing(tmp_path: Path) -> None:
    image().save(tmp_path / "plain.png")
    result = verify_png(tmp_path / "plain.png")
    assert result.status == "missing" and not result.ok


def test_a_non_image_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_text("hello")
    with pytest.raises(AigcError, match="not a readable image"):
        verify_png(tmp_path / "x.png")


def test_sketch_files_carry_the_model_weights_hash(trained_models: dict[str, Path], tmp_path: Path) -> None:
    paths = save_sketches(generate_sketches(trained_models["gan"], "sandal", 2, seed=4), tmp_path)
    result = verify_png(paths[1])
    assert result.ok and result.record is not None
    assert result.record.model_sha256 == weights_sha256(trained_models["gan"]) and result.record.index == 1
    sheet = verify_png(paths[-1])  # the contact sheet carries the batch's record with its own pixel hash
    assert sheet.ok and sheet.record is not None and sheet.record.parameters["contact_sheet_of"] == 2


def rewrite_chunks(data: bytes, chunk_type: bytes, transform) -> bytes:  # noqa: ANN001
    """The PNG with every ``chunk_type`` chunk's body transformed (and its length and CRC recomputed)."""
    out, position = bytearray(data[:8]), 8
    while position < len(data):
        length = int.from_bytes(data[position: position + 4], "big")
        kind, body = data[position + 4: position + 8], data[position + 8: position + 8 + length]
        if kind == chunk_type:
            body = transform(body)
        out += len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
        position += 12 + length
    return bytes(out)


@pytest.mark.skipif(not c2pa_available(), reason="c2pa-python is not installed (optional extra)")
def test_c2pa_manifest_is_signed_locally_and_catches_an_edited_record(tmp_path: Path) -> None:
    signer = C2paSigner(tmp_path / "keys")
    assert (tmp_path / "keys" / "signer.key").stat().st_mode & 0o077 == 0  # the private key is owner-only
    data = png_bytes(image(), record(), c2pa_signer=signer)
    result = verify_png(data)
    assert result.ok and result.c2pa_state == "Valid"
    # Change the seed inside the record (same length, valid PNG): the pixels still match their hash, but the
    # C2PA hard binding covers every byte, so the edit is caught.
    forged = rewrite_chunks(data, b"iTXt", lambda body: body.replace(b'"seed":3', b'"seed":4'))
    assert forged != data and verify_png(forged).record.seed == 4
    outcome = verify_png(forged)
    assert not outcome.ok and outcome.status == "modified" and "C2PA" in outcome.message
