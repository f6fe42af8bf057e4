"""Provenance: content hashes that survive re-spacing, and verification against the audit log."""

from __future__ import annotations

import pytest

from aigc_studio.content.pipeline import ContentResult
from aigc_studio.content.requests import make_request
from aigc_studio.errors import AigcError
from aigc_studio.evaluation.judge import RankedCandidate
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.safety.provenance import GENERATOR, content_hash, make_provenance, verify_provenance
from aigc_studio.store.audit import AuditEntry, AuditLog, audit_content_result
from aigc_studio.store.db import Database
from aigc_studio.store.library import ContentLibrary, NewContentItem

TEXT = "The Eagle is a French pub by the riverside.\nFamilies welcome."


def test_content_hash_ignores_re_spacing_and_unicode_form() -> None:
    assert content_hash(TEXT) == content_hash("  The Eagle is a  French pub\tby the riverside. Families welcome. ")
    assert content_hash("Café") == content_hash("Cafe\u0301")  # composed and decomposed é
    assert content_hash("夏季新款连衣裙，显瘦百搭") == content_hash("夏季 新款 连衣裙 ， 显瘦百搭")
    assert content_hash(TEXT) != content_hash(TEXT.replace("French", "Italian"))
    assert content_hash("a b") != content_hash("ab")  # spaces between Latin words still count


def test_make_provenance_fills_every_field() -> None:
    record = make_provenance(TEXT, model="e2e-copy", model_sha256="cd" * 32, params={"top_p": 0.9}, seed=7,
                             watermark_key_id="wm-1")
    data = record.to_dict()
    assert data["generator"] == GENERATOR and GENERATOR.startswith("aigc-studio/")
    assert data["content_sha256"] == content_hash(TEXT) and data["record_id"] is None
    assert data["created_at"].endswith("Z") or data["created_at"].endswith("+00:00")


def test_verify_finds_the_record_after_re_spacing_and_nothing_for_other_text(db: Database) -> None:
    log = AuditLog(db)
    info = log.append(AuditEntry(kind="completion", model="e2e-copy", model_sha256="cd" * 32, outputs=[TEXT],
                                 provenance=make_provenance(TEXT, model="e2e-copy")))
    found = verify_provenance("The Eagle is a French pub by the riverside.  Families welcome.", log)
    assert found.produced and found.match == "exact"
    assert [(r.record_id, r.model, r.model_sha256) for r in found.records] == [(info.id, "e2e-copy", "cd" * 32)]
    assert found.records[0].created_at == info.created_at

    other = verify_provenance("A text this system never wrote.", log)
    assert not other.produced and other.match == "none" and other.records == []
    with pytest.raises(AigcError, match="empty"):
        verify_provenance("  ", log)


def test_watermark_check_decides_when_no_record_matches(db: Database) -> None:
    log = AuditLog(db)
    calls: list[str] = []

    def detector(text: str) -> tuple[float, float, bool]:
        calls.append(text)
        return (5.2, 1e-7, True) if "edited" in text else (0.3, 0.4, False)

    edited = verify_provenance("An edited version of a generated text.", log, watermark_check=detector)
    assert edited.produced and edited.match == "watermark" and edited.watermark_z == 5.2 and edited.watermarked
    human = verify_provenance("Plain human prose.", log, watermark_check=detector)
    assert not human.produced and human.match == "none" and human.watermarked is False
    assert len(calls) == 2


def test_audit_content_result_records_every_candidate(db: Database) -> None:
    request = make_request("ad-copy", attributes="name[The Eagle], food[French]", keywords="riverside", n=2)
    candidates = [
        RankedCandidate(rank=1, index=1, text=TEXT, scores={"keyword_coverage": 1.0}, total=0.9),
        RankedCandidate(rank=2, index=0, text="The Eagle serves food.", scores={"keyword_coverage": 0.0}, total=0.4,
                        violations=["missing keyword 'riverside'"]),
    ]
    result = ContentResult(request=request, prompt="name[The Eagle], food[French]", prompt_format="records",
                           model="e2e-copy", params=SamplingParams(seed=11, n=2), candidates=candidates,
                           timing={"total": 0.25})
    log = AuditLog(db)
    provenance = make_provenance(TEXT, model="e2e-copy", model_sha256="ef" * 32, seed=11)
    info = audit_content_result(log, result, api_key_id=None, provenance=provenance)
    assert info.kind == "content" and info.task == "ad-copy" and info.seed == 11
    assert info.outputs == [TEXT, "The Eagle serves food."] and info.latency_ms == 250.0
    assert info.model_sha256 == "ef" * 32 and info.provenance["record_id"] == info.id
    assert info.params["request"]["keywords"] == ["riverside"] and info.params["sampling"]["seed"] == 11
    assert info.scores[1]["violations"] == ["missing keyword 'riverside'"]
    assert log.verify().ok
    # the runner-up is found too: a caller may publish any candidate it was given
    assert verify_provenance("The Eagle serves food.", log).records[0].record_id == info.id

    saved = ContentLibrary(db).save(NewContentItem.from_result(result, tags=["pubs"], audit_record_id=info.id))
    assert saved.text == TEXT and saved.audit_record_id == info.id and saved.scores["total"] == 0.9
