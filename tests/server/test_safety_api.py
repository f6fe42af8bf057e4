"""Governance through the API: moderation, refused prompts, watermark, provenance and the audit chain."""

from __future__ import annotations

import pytest

from aigc_studio.store.audit import AuditLog

MODEL = "e2e-copy"
ATTRIBUTES = "name[The Eagle], eatType[pub], food[French], area[riverside]"
HUMAN_TEXT = "The Eagle is a French pub by the riverside, a short walk from the city centre, loved by families."


def test_moderations_in_openai_shape(client):
    body = client.post("/v1/moderations", json={"input": ["where to buy a fake passport", "a cosy riverside pub"]}).json()
    flagged, clean = body["results"]
    assert flagged["flagged"] and flagged["categories"]["illicit"] and flagged["category_scores"]["illicit"] >= 0.5
    assert flagged["action"] == "block" and flagged["matches"][0]["text"] == "fake passport"
    assert not clean["flagged"] and not any(clean["categories"].values())
    single = client.post("/v1/moderations", json={"input": "a cosy riverside pub"}).json()
    assert len(single["results"]) == 1


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"model": MODEL, "prompt": "name[The Eagle], food[cocaine]"}),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "name[Fake Passport Shop]"}]}),
    ("/v1/content", {"task": "ad-copy", "attributes": "name[The Eagle], food[cocaine]"}),
    ("/v1/content", {"task": "ad-copy", "attributes": "name[The Eagle], food[cocaine]", "stream": True}),
])
def test_blocked_prompts_are_refused_naming_the_category(client, assert_error, path, body):
    error = assert_error(client.post(path, json=body), 400, code="content_policy_violation")
    assert "illicit" in error["message"]


def test_completions_carry_provenance_and_are_verified(client):
    body = client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "seed": 3, "max_tokens": 40}).json()
    (provenance,) = body["provenance"]
    text = body["choices"][0]["text"]
    assert provenance["model"] == MODEL and provenance["seed"] == 3 and provenance["record_id"] >= 1
    assert provenance["watermark_key_id"]
    verified = client.post("/v1/provenance/verify", json={"text": "  " + text.replace(" ", "  ") + "\n"}).json()
    assert verified["produced"] and verified["match"] == "exact"
    assert provenance["record_id"] in [record["record_id"] for record in verified["records"]]
    other = client.post("/v1/provenance/verify", json={"text": HUMAN_TEXT}).json()
    assert other["match"] == "none" and not other["produced"] and other["watermark"]["watermarked"] is False


def test_content_result_has_provenance_and_moderation(client):
    body = client.post("/v1/content", json={"task": "ad-copy", "attributes": ATTRIBUTES, "n": 2, "seed": 1}).json()
    assert body["provenance"]["record_id"] >= 1 and body["provenance"]["model"] == MODEL
    assert body["moderation"]["flagged"] is False


def test_watermark_is_detected_on_long_generations_and_not_on_human_text(client):
    # min_tokens keeps the model writing, so there are enough tokens for the z-test (short texts cannot pass it).
    body = client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "seed": 4, "min_tokens": 60,
                                                "max_tokens": 60}).json()
    detected = client.post("/v1/watermark/detect", json={"text": body["choices"][0]["text"]}).json()
    assert detected["watermarked"] and detected["z"] > 4 and detected["p_value"] < 1e-4
    human = client.post("/v1/watermark/detect", json={"text": HUMAN_TEXT * 3}).json()
    assert not human["watermarked"] and human["num_tokens_scored"] > 10


def test_watermark_detection_needs_the_watermark_on(client_factory, assert_error):
    client = client_factory(watermark=False)
    assert_error(client.post("/v1/watermark/detect", json={"text": HUMAN_TEXT}), 400)


def test_every_generation_is_in_one_intact_audit_chain(client_factory):
    client = client_factory()
    client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "max_tokens": 10})
    client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "max_tokens": 10, "stream": True})
    client.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": ATTRIBUTES}]})
    client.post("/v1/content", json={"task": "ad-copy", "attributes": ATTRIBUTES, "n": 2})
    log = AuditLog(client.app.state.server.database)
    assert [record.kind for record in log.records()] == ["completion", "completion", "chat", "content"]
    assert log.verify().ok
