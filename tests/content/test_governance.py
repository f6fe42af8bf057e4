"""Governance around the content pipeline: moderation in and out, personal data, watermark, provenance, audit."""

from __future__ import annotations

import pytest

from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.content.governance import Governance
from aigc_studio.content.pipeline import ContentPipeline
from aigc_studio.content.requests import make_request
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.registry import resolve_model
from aigc_studio.settings import load_settings
from aigc_studio.store.db import Database

EAGLE = "name[The Eagle], eatType[coffee shop], food[French], area[riverside]"


@pytest.fixture(scope="module")
def backend():
    return BuiltinBackend.from_directory(resolve_model("e2e-copy"))


@pytest.fixture
def governance(tmp_path):
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'aigc.db'}",
                             watermark={"key_file": tmp_path / "watermark.key"})
    return Governance(settings, Database(settings.database_url))


def test_blocked_prompt_is_refused_with_the_category(governance):
    with pytest.raises(AigcError, match="violence") as refused:
        governance.check_prompt("write an ad that says we will kill you if you do not buy")
    assert refused.value.code == "content_policy_violation" and refused.value.status == 400
    assert governance.check_prompt("a cosy riverside cafe")["flagged"] is False


def test_outputs_are_withheld_redacted_or_flagged(governance):
    blocked = governance.check_output("Buy now or we kill you.")
    assert blocked.violations == ["content policy: violence"] and "kill" not in blocked.text
    flagged = governance.check_output("Guaranteed profits for every customer!")
    assert {flag["category"] for flag in flagged.flags} == {"fraud"} and flagged.text.startswith("Guaranteed")
    # personal data the model produced is replaced; what the business gave in its prompt may stay
    leaked = governance.check_output("Call Anna on 13812345678 today.", prompt="phone[010-62345678]")
    assert "13812345678" not in leaked.text and "<PHONE_1>" in leaked.text
    assert {"kind": "pii", "type": "PHONE", "action": "redact"} in leaked.flags
    given = governance.check_output("Call us on 13812345678.", prompt="phone[138 1234 5678]")
    assert given.text == "Call us on 13812345678." and given.flags == []


def test_pipeline_run_is_watermarked_stamped_and_audited(governance, backend):
    pipeline = ContentPipeline(backend, hooks=governance.pipeline_hooks(backend, api_key_id=None))
    request = make_request("ad-copy", attributes=EAGLE, n=2)
    result = pipeline.run(request, SamplingParams(temperature=1.0, seed=3, max_tokens=60))
    assert result.params.watermark is not None
    assert result.moderation["flagged"] is False
    provenance = result.provenance
    assert provenance["model"] == backend.info.name and provenance["model_sha256"] == backend.info.weights_sha256
    assert provenance["watermark_key_id"] == governance.watermark.key_id and provenance["record_id"] == 1
    assert "key" not in str(result.to_dict()["params"]).replace("key_id", "")
    # the audit log holds the record, and the text is recognised as ours
    assert governance.audit_log.verify().ok
    verification = governance.verify(result.best.text, backend)
    assert verification.produced and verification.match == "exact"
    assert not governance.verify("A completely different sentence written by a person.", backend).produced


def test_watermark_is_skipped_for_backends_that_cannot_apply_it(governance, backend):
    class Remote:
        info = backend.info.__class__(name="remote", backend="openai", prompt_format="text", context_length=4096)

    params = SamplingParams()
    assert governance.sampling_params(params, Remote()) is params
    assert governance.sampling_params(params, backend).watermark == governance.watermark


def test_governance_without_database_keeps_no_audit(tmp_path, backend):
    settings = load_settings(database_url="sqlite://", watermark={"enabled": False, "key_file": tmp_path / "k"})
    governance = Governance(settings)
    assert governance.watermark is None and governance.audit_log is None
    provenance = governance.record(kind="completion", backend_info=backend.info, params=SamplingParams(seed=1),
                                   prompt="p", outputs=["hello"])
    assert provenance["record_id"] is None and provenance["watermark_key_id"] is None
    with pytest.raises(AigcError, match="audit log"):
        governance.verify("hello")


def test_a_request_in_a_language_the_model_cannot_write_is_refused(backend):
    assert backend.info.languages == ("en",)
    with pytest.raises(AigcError, match="writes en, not 'zh'"):
        ContentPipeline(backend).run(make_request("ad-copy", attributes="类型#上衣*颜色#白色", language="zh"))


def test_changed_texts_are_marked_so_their_logprobs_are_dropped(governance):
    from aigc_studio.content.governance import text_was_changed

    assert text_was_changed(governance.check_output("Mail anna.lee@example.com now.").flags)
    assert text_was_changed(governance.check_output("Buy now or we kill you.").flags)
    assert not text_was_changed(governance.check_output("Guaranteed profits for all!").flags)  # flagged only
    assert not text_was_changed(governance.check_output("A cosy riverside cafe.").flags)
