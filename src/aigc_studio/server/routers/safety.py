"""Safety routes: OpenAI-shaped moderation, watermark detection and provenance verification."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from aigc_studio.errors import AigcError
from aigc_studio.images.provenance import verify_png
from aigc_studio.safety.moderation import to_openai
from aigc_studio.safety.provenance import produced_records
from aigc_studio.safety.watermark import WatermarkDetection, detect_text
from aigc_studio.server import protocol as p
from aigc_studio.server.routers.images import decode_sketch
from aigc_studio.server.state import ServedModel, ServerState
from aigc_studio.store.audit import AuditLog

router = APIRouter(prefix="/v1", tags=["safety"], responses=p.ERROR_RESPONSES)


def _state(request: Request) -> ServerState:
    return request.app.state.server


def _default_model(state: ServerState, name: str | None) -> ServedModel:
    return state.model(name, default=state.settings.default_model if state.settings.default_model in state.models else None)


def _detect(state: ServerState, text: str, model: str | None) -> WatermarkDetection:
    served = _default_model(state, model)
    tokenizer = getattr(served.backend, "tokenizer", None)
    if tokenizer is None:
        raise AigcError(f"model {served.name!r} has no local tokenizer to score the watermark with; "
                        "name a builtin model", param="model")
    vocab_size = getattr(getattr(getattr(served.backend, "model", None), "config", None), "vocab_size", None)
    return detect_text(text, tokenizer, state.governance.detection_watermark(), vocab_size=vocab_size)


@router.post("/moderations", response_model=p.ModerationResponse)
def moderate(body: p.ModerationRequest, request: Request) -> p.ModerationResponse:
    """Moderate one text or a list under the server's policy, in OpenAI's shape (plus action and matches)."""
    state = _state(request)
    texts = [body.input] if isinstance(body.input, str) else body.input
    moderator = state.governance.moderator
    results = []
    for result in moderator.moderate_batch(texts):
        results.append(p.ModerationResult(
            **to_openai(result), action=result.action,
            matches=[{"category": m.category, "start": m.start, "end": m.end, "text": m.text, "rule": m.rule}
                     for m in result.matches],
        ))
    return p.ModerationResponse(id=f"modr-{uuid.uuid4().hex}", model=f"aigc-policy:{moderator.policy.source}",
                                results=results)


@router.post("/watermark/detect", response_model=p.WatermarkDetectResponse)
def detect_watermark(body: p.WatermarkDetectRequest, request: Request) -> p.WatermarkDetectResponse:
    """Whether a text carries this server's watermark: z-score and p-value of its green-token count."""
    detection = _detect(_state(request), body.text, body.model)
    return p.WatermarkDetectResponse(z=detection.z, p_value=detection.p_value, watermarked=detection.watermarked,
                                     num_tokens_scored=detection.num_tokens_scored)


@router.post("/provenance/verify", response_model=p.ProvenanceVerifyResponse)
def verify(body: p.ProvenanceVerifyRequest, request: Request) -> p.ProvenanceVerifyResponse:
    """Whether (and when, by which model) this system produced a text: by content hash, then by watermark; or
    an image: its generation record, its pixels unchanged, its C2PA manifest, and the audit record that made it."""
    state = _state(request)
    if body.image is not None:
        return _verify_image(state, body.image)
    verification = state.governance.verify(body.text, _default_model(state, None).backend)
    watermark = None
    if verification.watermark_z is not None:
        watermark = {"z": verification.watermark_z, "p_value": verification.watermark_p_value,
                     "watermarked": verification.watermarked}
    return p.ProvenanceVerifyResponse(produced=verification.produced, match=verification.match,
                                      records=[record.model_dump(mode="json") for record in verification.records],
                                      watermark=watermark)


def _verify_image(state: ServerState, image_b64: str) -> p.ProvenanceVerifyResponse:
    check = verify_png(decode_sketch(image_b64, "image"))
    records = []
    if check.ok and check.record is not None:
        records = produced_records(AuditLog(state.database), check.record.pixels_sha256)
    # An intact record without an audit record here: made by `aigc sketch` or another installation (its C2PA
    # state says whether a signature backs the claim).
    match = "exact" if records else "record" if check.ok else "modified" if check.status == "modified" else "none"
    return p.ProvenanceVerifyResponse(
        produced=match in ("exact", "record"), match=match,
        records=[record.model_dump(mode="json") for record in records],
        image=p.ImageVerification(status=check.status, message=check.message, c2pa_state=check.c2pa_state,
                                  record=check.record.model_dump(mode="json") if check.record else None),
    )
