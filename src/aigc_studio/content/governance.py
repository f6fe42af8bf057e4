"""Governance for every entry point: moderation, personal data, watermark, provenance and the audit log.

One :class:`Governance` per installation, built from the settings, gives the content pipeline its
:class:`~aigc_studio.content.pipeline.PipelineHooks` and gives plain completions (the OpenAI endpoints, the
CLI) the same checks one by one, so a text is governed the same way whichever door it leaves by:

1. the prompt is moderated; a blocked category refuses the request (400, ``content_policy_violation``);
2. sampling gets the keyed watermark when the backend runs our logits processors;
3. every output is moderated (block → withheld and ranked last, redact → masked, flag → noted) and personal
   data the prompt did not contain is replaced by typed placeholders (a phone number the business gave
   in its attributes may appear; one the model made up or remembered may not);
4. the best output gets a provenance record, and the whole generation an audit record, hash-chained.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aigc_studio.backends.base import Backend, BackendInfo
from aigc_studio.content.pipeline import ContentResult, PipelineHooks
from aigc_studio.content.requests import ContentRequest
from aigc_studio.errors import AigcError
from aigc_studio.evaluation.judge import RankedCandidate
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.safety import pii
from aigc_studio.safety.moderation import ModerationResult, Moderator
from aigc_studio.safety.provenance import ProvenanceVerification, make_provenance, verify_provenance
from aigc_studio.safety.watermark import WatermarkConfig, detect_text
from aigc_studio.settings import Settings
from aigc_studio.store.audit import AuditEntry, AuditLog, audit_content_result
from aigc_studio.store.db import Database

# Backends whose sampling runs our logits processors, and so can carry the watermark.
WATERMARKING_BACKENDS = ("builtin", "transformers")


@dataclass
class OutputCheck:
    """What output governance did to one text.

    Attributes:
        text: the text to publish (redacted, or a notice when withheld).
        flags: JSON-ready findings (``{"kind": "moderation", "category", "action"}``, ``{"kind": "pii", "type"}``).
        violations: hard problems that rank it last (a blocked category).
    """

    text: str
    flags: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def moderation_summary(result: ModerationResult) -> dict[str, Any]:
    """The JSON-ready findings of one moderation: flagged categories, action and the non-zero scores."""
    return {
        "flagged": result.flagged,
        "action": result.action,
        "categories": list(result.flagged_categories),
        "scores": {name: score for name, score in result.categories.items() if score > 0},
    }


def text_was_changed(flags: Sequence[dict[str, Any]]) -> bool:
    """Whether output governance redacted or withheld a text (its token logprobs would spell what was removed,
    so they must not be returned)."""
    return any(flag.get("action") in ("redact", "block") for flag in flags)


class Governance:
    """The governance steps of one installation.

    Args:
        settings: the installation's settings (watermark key file and strength, moderation policy).
        database: where audit records go; None keeps no audit log (provenance is still made).
        moderator: the moderator to use; None loads the policy named in the settings (or the bundled one).
    """

    def __init__(self, settings: Settings, database: Database | None = None, *, moderator: Moderator | None = None) -> None:
        self.settings = settings
        self.moderator = moderator or Moderator.from_policy(settings.moderation_policy, settings.moderation_classifier)
        self.watermark = WatermarkConfig.from_settings(settings.watermark, create=True) if settings.watermark.enabled else None
        self.audit_log = AuditLog(database) if database is not None else None

    # -- prompts ------------------------------------------------------------------------------------------

    def check_prompt(self, text: str) -> dict[str, Any]:
        """Moderate a prompt; return the findings.

        Raises:
            AigcError: (status 400, code ``content_policy_violation``) a category with the action ``block``
                was reached; the message names it.
        """
        result = self.moderator.moderate(text)
        if result.blocked:
            blocked = [name for name in result.flagged_categories if self.moderator.policy.category(name).action == "block"]
            raise AigcError(
                f"the request was refused by the content policy (category: {', '.join(blocked)}); rephrase it",
                param="prompt", code="content_policy_violation",
            )
        return moderation_summary(result)

    def check_request(self, request: ContentRequest) -> tuple[ContentRequest, dict[str, Any]]:
        """Moderate everything a content request says (attributes, audience, tone, keywords)."""
        return request, self.check_prompt(request_text(request))

    # -- sampling -----------------------------------------------------------------------------------------

    def sampling_params(self, params: SamplingParams, backend: Backend) -> SamplingParams:
        """``params`` with the watermark added when it is on and ``backend`` can apply it."""
        if self.watermark is None or backend.info.backend not in WATERMARKING_BACKENDS or params.watermark is not None:
            return params
        return params.replace(watermark=self.watermark)

    # -- outputs ------------------------------------------------------------------------------------------

    def check_output(self, text: str, prompt: str = "") -> OutputCheck:
        """Moderate one output and replace personal data that ``prompt`` did not contain."""
        check = OutputCheck(text=text)
        result = self.moderator.moderate(text)
        for name in result.flagged_categories:
            action = self.moderator.policy.category(name).action
            check.flags.append({"kind": "moderation", "category": name, "action": action, "score": result.categories[name]})
        if result.blocked:
            blocked = ", ".join(flag["category"] for flag in check.flags if flag["action"] == "block")
            check.violations.append(f"content policy: {blocked}")
            check.text = f"[withheld by the content policy: {blocked}]"
            return check
        if result.action == "redact":
            check.text = result.redacted_text
        given = {pii.canonical_value(entity) for entity in pii.detect(prompt)} if prompt else set()
        leaked = [entity for entity in pii.detect(check.text) if pii.canonical_value(entity) not in given]
        if leaked:
            check.text = pii.redact(check.text, "placeholder", entities=leaked)
            check.flags.extend({"kind": "pii", "type": entity.type, "action": "redact"} for entity in leaked)
        return check

    def check_candidates(self, candidates: list[RankedCandidate], prompt: str = "") -> list[RankedCandidate]:
        """:meth:`check_output` on every ranked candidate; the pipeline ranks them again afterwards."""
        for candidate in candidates:
            check = self.check_output(candidate.text, prompt)
            candidate.text = check.text
            candidate.flags.extend(check.flags)
            candidate.violations.extend(check.violations)
        return candidates

    # -- provenance and audit -----------------------------------------------------------------------------

    def provenance(self, text: str, info: BackendInfo, params: SamplingParams, **extra_params: Any) -> dict[str, Any]:
        """The provenance record of ``text`` (not yet audited: ``record_id`` is None)."""
        watermarked = params.watermark is not None
        return make_provenance(
            text, model=info.name, model_sha256=info.weights_sha256 or None,
            params={**params.to_dict(), **extra_params}, seed=params.seed,
            watermark_key_id=params.watermark.key_id if watermarked else None,
        ).to_dict()

    def record(
        self,
        *,
        kind: str,
        backend_info: BackendInfo,
        params: SamplingParams,
        prompt: str,
        outputs: Sequence[str],
        scores: Any = None,
        api_key_id: int | None = None,
        latency_ms: float | None = None,
        task: str | None = None,
    ) -> dict[str, Any]:
        """Make the provenance record of ``outputs[0]``, append the audit record, return the provenance.

        The returned dict carries ``record_id`` when an audit log is kept.
        """
        provenance = self.provenance(outputs[0] if outputs else "", backend_info, params)
        if self.audit_log is not None:
            info = self.audit_log.append(AuditEntry(
                kind=kind, model=backend_info.name, model_sha256=backend_info.weights_sha256 or None, task=task,
                params=params.to_dict(), seed=params.seed, prompt=prompt, outputs=list(outputs), scores=scores,
                latency_ms=latency_ms, provenance=provenance, api_key_id=api_key_id,
            ))
            provenance = {**provenance, "record_id": info.id}
        return provenance

    def record_images(self, *, model: str, model_sha256: str, prompt: str, params: dict[str, Any], seed: int,
                      records: Sequence[dict[str, Any]], api_key_id: int | None = None,
                      latency_ms: float | None = None) -> int | None:
        """Append the audit record of an image generation; returns its id (None without an audit log).

        The outputs are the images' generation records (:class:`~aigc_studio.images.provenance.ImageProvenance`
        as JSON), each indexed under its ``pixels_sha256``, so any one of the images traces back to its request.
        """
        if self.audit_log is None:
            return None
        info = self.audit_log.append(AuditEntry(
            kind="image", model=model, model_sha256=model_sha256 or None, params=params, seed=seed, prompt=prompt,
            outputs=[json.dumps(record, sort_keys=True, ensure_ascii=False) for record in records],
            latency_ms=latency_ms, provenance=dict(records[0]), api_key_id=api_key_id,
            content_sha256=records[0]["pixels_sha256"], output_hashes=[record["pixels_sha256"] for record in records],
        ))
        return info.id

    def detection_watermark(self) -> WatermarkConfig:
        """The watermark key and strength to detect with.

        Raises:
            AigcError: the watermark is off in the settings, so there is no key to detect with.
        """
        if self.watermark is None:
            raise AigcError("the watermark is off on this server (settings watermark.enabled = false); "
                            "turn it on to detect it", param="text")
        return self.watermark

    def verify(self, text: str, backend: Backend | None = None) -> ProvenanceVerification:
        """Whether this installation produced ``text``: an exact audit match, else its watermark under
        ``backend``'s tokenizer (a builtin backend; others cannot tokenize here)."""
        if self.audit_log is None:
            raise AigcError("provenance needs the audit log; start with a database (AIGC_DATABASE_URL)", param="text")
        check = self._watermark_check(backend)
        return verify_provenance(text, self.audit_log, watermark_check=check)

    def _watermark_check(self, backend: Backend | None) -> Callable[[str], Any] | None:
        tokenizer = getattr(backend, "tokenizer", None)
        if self.watermark is None or tokenizer is None:
            return None
        vocab_size = getattr(getattr(backend, "model", None), "config", None)
        vocab_size = getattr(vocab_size, "vocab_size", None)

        def check(text: str) -> tuple[float, float, bool]:
            detection = detect_text(text, tokenizer, self.watermark, vocab_size=vocab_size)
            return detection.z, detection.p_value, detection.watermarked

        return check

    # -- the pipeline -------------------------------------------------------------------------------------

    def pipeline_hooks(self, backend: Backend, api_key_id: int | None = None) -> PipelineHooks:
        """Hooks that run every step above inside :class:`~aigc_studio.content.pipeline.ContentPipeline`.

        They hold no per-run state, so one set serves concurrent runs.
        """

        def moderate_output(candidates: list[RankedCandidate], request: ContentRequest) -> list[RankedCandidate]:
            return self.check_candidates(candidates, prompt=request_text(request))

        def stamp(result: ContentResult) -> ContentResult:
            result.provenance = self.provenance(result.best.text, backend.info, result.params, task=result.request.task)
            return result

        def audit(result: ContentResult) -> None:
            if self.audit_log is not None:
                info = audit_content_result(self.audit_log, result, api_key_id=api_key_id, provenance=result.provenance)
                result.provenance = {**(result.provenance or {}), "record_id": info.id}

        return PipelineHooks(
            moderate_input=self.check_request,
            sampling=lambda params: self.sampling_params(params, backend),
            moderate_output=moderate_output,
            stamp=stamp,
            audit=audit,
        )


def request_text(request: ContentRequest) -> str:
    """Everything the user wrote in a content request, one part per line (what moderation reads)."""
    brief = [*request.attributes.values(), request.audience or "", request.tone or "", *request.keywords]
    return "\n".join(part for part in brief if part)
