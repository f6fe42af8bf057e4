"""Image routes: ``POST /v1/images/generations`` in OpenAI's shape, served by the loaded sketch models.

The prompt names a product category of the model (``"a red ankle boot"`` → ``ankle-boot``,
:func:`~aigc_studio.images.prompt.label_from_prompt`); it is moderated like every text prompt. Each image
comes back as ``b64_json``: a PNG carrying its generation record (the ``aigc:provenance`` chunk that
``aigc sketch`` writes, so ``aigc provenance verify`` and ``POST /v1/provenance/verify`` check it) and, with
c2pa-python installed and ``server.image_c2pa`` on (the default), a signed C2PA manifest; the request gets
an audit record that finds each image by its pixels' hash.
Sampling is CPU-bound: it runs in a worker thread, one request per model at a time, so the event loop keeps
answering other requests.

``POST /v1/images/library`` keeps a generated PNG in the content library (task ``sketch``): the PNG (base64)
and its generation record go in the item's ``request``, linked to the audit record of its generation;
``GET /v1/images/library/{id}.png`` gives the PNG back.
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import time
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from PIL import Image, UnidentifiedImageError

from aigc_studio.errors import AigcError
from aigc_studio.images.pipeline import MAX_SIZE, generate_sketches
from aigc_studio.images.prompt import label_from_prompt
from aigc_studio.images.provenance import pixels_sha256, png_bytes, verify_png
from aigc_studio.images.sampling import SamplingOptions
from aigc_studio.server import protocol as p
from aigc_studio.server.state import ServedImageModel, ServerState
from aigc_studio.store.audit import AuditLog
from aigc_studio.store.library import ContentLibrary, ContentNotFoundError, NewContentItem

router = APIRouter(prefix="/v1", tags=["images"], responses=p.ERROR_RESPONSES)

DIFFUSION_TYPE = "aigc-diffusion"
SKETCH_TASK = "sketch"  # the library task of saved sketches
# DDIM steps one request may ask for: each step is a U-Net pass over 2n images on the server's CPU.
MAX_STEPS = 100
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
# A seed drawn for the client (and returned) when it gives none: below 2**53 so JavaScript reads it exactly.
_SEED_BOUND = 2**53


def parse_size(size: str | None, native: int) -> int | None:
    """The output side for ``size`` (``"WxH"``, square, from the model's own side up to :data:`MAX_SIZE`);
    None (or ``"auto"``) keeps the model's side.

    Raises:
        AigcError: (param ``size``) not ``WxH``, not square, or out of range.
    """
    if size is None or size == "auto":
        return None
    match = _SIZE.match(size.strip().lower())
    allowed = f'"{native}x{native}" (the model\'s own size) up to "{MAX_SIZE}x{MAX_SIZE}" (upscaled)'
    if match is None:
        raise AigcError(f'size must be "WxH" such as "256x256", got {size!r}; allowed: {allowed}', param="size")
    width, height = int(match.group(1)), int(match.group(2))
    if width != height:
        raise AigcError(f"size must be square (the models draw square sketches), got {size!r}; allowed: {allowed}",
                        param="size")
    if not native <= width <= MAX_SIZE:
        raise AigcError(f"size {size!r} is out of range; allowed: {allowed}", param="size")
    return None if width == native else width


def _options(body: p.ImageGenerationRequest, served: ServedImageModel) -> SamplingOptions | None:
    if served.sketch.model_type != DIFFUSION_TYPE:
        for name in ("steps", "guidance"):
            if getattr(body, name) is not None:
                raise AigcError(f"{name} applies to diffusion models only; {served.name!r} is a "
                                f"{served.sketch.model_type} model: drop {name}", param=name)
        return None
    defaults = SamplingOptions()
    steps = defaults.steps if body.steps is None else body.steps
    if not 1 <= steps <= MAX_STEPS:
        raise AigcError(f"steps must be between 1 and {MAX_STEPS} on this server, got {steps}", param="steps")
    return SamplingOptions(steps=steps, guidance=defaults.guidance if body.guidance is None else body.guidance)


def _generate(state: ServerState, served: ServedImageModel, body: p.ImageGenerationRequest,
              api_key_id: int | None) -> p.ImageGenerationResponse:
    """Check, moderate, sample, encode and audit one request (runs in a worker thread)."""
    started = time.perf_counter()
    if body.response_format != "b64_json":
        raise AigcError(f"response_format {body.response_format!r} is not supported; this server returns images "
                        'inline only: use "b64_json"', param="response_format")
    cap = state.settings.server.max_image_n
    if body.n > cap:
        raise AigcError(f"n must be at most {cap} on this server, got {body.n}; ask for fewer images per request "
                        "(setting server.max_image_n)", param="n")
    sketch = served.sketch
    size = parse_size(body.size, sketch.model.config.image_size)
    options = _options(body, served)
    state.governance.check_prompt(body.prompt)
    label = label_from_prompt(body.prompt, sketch.class_names)
    seed = body.seed if body.seed is not None else secrets.randbelow(_SEED_BOUND)
    with served.lock:
        batch = generate_sketches(sketch, label, body.n, seed, options=options, size=size)
    images: list[tuple[bytes, dict[str, Any]]] = []
    for item in batch.sketches:
        record = item.record.model_copy(update={"pixels_sha256": pixels_sha256(item.image)})
        images.append((png_bytes(item.image, record, c2pa_signer=state.image_signer), record.model_dump(mode="json")))
    params = {"label": batch.label, "n": body.n, "size": size or sketch.model.config.image_size,
              "response_format": body.response_format, **batch.parameters}
    record_id = state.governance.record_images(
        model=served.name, model_sha256=sketch.weights_sha256, prompt=body.prompt, params=params, seed=seed,
        records=[record for _, record in images], api_key_id=api_key_id,
        latency_ms=(time.perf_counter() - started) * 1000,
    )
    return p.ImageGenerationResponse(
        created=int(time.time()), model=served.name, seed=seed, audit_record_id=record_id,
        data=[p.ImageData(b64_json=base64.b64encode(png).decode("ascii"), revised_prompt=batch.label, provenance=record)
              for png, record in images],
    )


@router.post("/images/generations", response_model=p.ImageGenerationResponse)
async def create_images(body: p.ImageGenerationRequest, request: Request) -> p.ImageGenerationResponse:
    """Product sketches of the category the prompt names, as PNGs carrying their generation record."""
    state: ServerState = request.app.state.server
    served = state.image_model(body.model)
    return await anyio.to_thread.run_sync(_generate, state, served, body, getattr(request.state, "api_key_id", None))


def decode_sketch(b64: str, param: str) -> bytes:
    """The image bytes of a base64 field, refused (from the header alone: a small file can declare huge pixels)
    when it is not base64, not an image, or larger than any sketch.

    Raises:
        AigcError: (param ``param``) naming what is wrong.
    """
    try:
        png = base64.b64decode(b64, validate=True)
    except ValueError:
        raise AigcError(f"{param} is not valid base64; send the b64_json of a /v1/images/generations answer",
                        param=param) from None
    try:
        with Image.open(io.BytesIO(png)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise AigcError(f"{param} is not a readable image ({error}); send the b64_json of a "
                        "/v1/images/generations answer", param=param) from None
    if width > MAX_SIZE or height > MAX_SIZE:
        raise AigcError(f"the image is {width}x{height}; sketches are at most {MAX_SIZE}x{MAX_SIZE}", param=param)
    return png


@router.post("/images/library", response_model=p.LibraryItem, status_code=201)
def save_sketch(body: p.SketchSaveRequest, request: Request) -> p.LibraryItem:
    """Keep a generated sketch (its PNG with an intact generation record) in the content library."""
    state: ServerState = request.app.state.server
    png = decode_sketch(body.b64_json, "b64_json")
    check = verify_png(png)
    if not check.ok or check.record is None:
        raise AigcError(f"only sketches made here with their generation record can be saved: {check.message}",
                        param="b64_json")
    record = check.record
    matches = AuditLog(state.database).find_by_content_hash(record.pixels_sha256)
    item = NewContentItem(
        task=SKETCH_TASK, title=body.title or f"{record.label} sketch (seed {record.seed}, #{record.index})",
        text=f"{record.label} design sketch by {record.model} ({record.model_type}), seed {record.seed}, "
             f"image {record.index}, {json.dumps(record.parameters, sort_keys=True)}",
        request={"kind": "image", "png_b64": body.b64_json, "provenance": record.model_dump(mode="json")},
        tags=body.tags, audit_record_id=matches[-1].id if matches else None,
    )
    return p.LibraryItem.from_info(ContentLibrary(state.database).save(item))


@router.get("/images/library/{item_id}.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def get_sketch(item_id: str, request: Request) -> Response:
    """The PNG of a sketch saved in the library (its generation record inside)."""
    state: ServerState = request.app.state.server
    info = ContentLibrary(state.database).get(item_id)
    stored = info.request if isinstance(info.request, dict) else {}
    if info.task != SKETCH_TASK or "png_b64" not in stored:
        raise ContentNotFoundError(f"library item {item_id} is not a saved sketch", param="item_id")
    return Response(base64.b64decode(stored["png_b64"]), media_type="image/png",
                    headers={"Content-Disposition": f'inline; filename="sketch-{item_id}.png"'})
