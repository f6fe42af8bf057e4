"""Studio endpoints: tasks, content with score cards (plain and streamed), evaluation and the library."""

from __future__ import annotations

import csv
import io
import json

import pytest

MODEL = "e2e-copy"
ATTRIBUTES = "name[The Eagle], eatType[pub], food[French], area[riverside]"
CONTENT = {"task": "ad-copy", "attributes": ATTRIBUTES, "keywords": ["riverside"], "n": 3, "seed": 7}


def test_tasks_list_every_task_with_its_fields(client):
    tasks = {task["name"]: task for task in client.get("/v1/tasks").json()["data"]}
    assert set(tasks) == {"ad-copy", "product-description", "social-post", "blog-draft", "email-subject"}
    assert tasks["ad-copy"]["default_models"] == {"en": MODEL}
    names = [field["name"] for field in tasks["social-post"]["fields"]]
    assert "attributes" in names and "platform" in names
    assert "platform" not in [field["name"] for field in tasks["ad-copy"]["fields"]]


def test_content_ranks_candidates_with_score_cards(client):
    response = client.post("/v1/content", json=CONTENT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("cnt_") and body["object"] == "content" and body["model"] == MODEL
    candidates = body["candidates"]
    assert [candidate["rank"] for candidate in candidates] == [1, 2, 3]
    assert body["text"] == candidates[0]["text"]
    for candidate in candidates:
        assert set(candidate["weights"]) == set(candidate["scores"]) and candidate["explanation"].startswith("ranked")
        assert 0 <= candidate["score"] <= 1
    # Ranking: acceptable candidates first, then by total.
    keys = [(bool(c["violations"]), -c["score"]) for c in candidates]
    assert keys == sorted(keys)
    assert client.get(f"/v1/content/{body['id']}").json() == body


def test_streamed_content_sends_deltas_then_the_result(client, sse_events):
    response = client.post("/v1/content", json={**CONTENT, "stream": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    deltas = [event for event in events[:-1] if event["type"] == "delta"]
    result = events[-2]
    assert result["type"] == "result" and len(result["candidates"]) == 3
    streamed = {}
    for delta in deltas:
        streamed[delta["candidate"]] = streamed.get(delta["candidate"], "") + delta["text"]
    assert set(streamed) == {0, 1, 2}
    # Each ranked text is one streamed candidate (finalised: stripped).
    assert sorted(c["text"] for c in result["candidates"]) == sorted(text.strip() for text in streamed.values())


def test_content_is_reproducible_with_a_seed(client_factory):
    client = client_factory(watermark=False)
    first = client.post("/v1/content", json=CONTENT).json()
    second = client.post("/v1/content", json=CONTENT).json()
    assert [c["text"] for c in first["candidates"]] == [c["text"] for c in second["candidates"]]


def test_content_logprobs_for_the_heat_map(client):
    body = client.post("/v1/content", json={**CONTENT, "n": 1, "logprobs": True, "top_logprobs": 2}).json()
    tokens = body["candidates"][0]["logprobs"]
    assert tokens and all(token["logprob"] <= 0 and len(token["top_logprobs"]) == 2 for token in tokens)


@pytest.mark.parametrize("body, status, param", [
    ({"task": "poem", "attributes": ATTRIBUTES}, 400, "task"),
    ({"task": "ad-copy", "attributes": "   "}, 400, "attributes"),
    ({"task": "ad-copy", "attributes": ATTRIBUTES, "keywords": ["pub"], "forbidden_words": ["pub"]}, 400, "forbid"),
    ({"task": "ad-copy", "attributes": ATTRIBUTES, "n": 9}, 400, "n"),
    ({"task": "ad-copy", "attributes": ATTRIBUTES, "platform": "x"}, 400, "platform"),
    ({"task": "ad-copy", "attributes": ATTRIBUTES, "model": "nope"}, 404, "model"),
    ({"task": "ad-copy", "attributes": ATTRIBUTES, "language": "fr"}, 422, "language"),
    ({"task": "ad-copy", "attributes": ATTRIBUTES, "colour": "red"}, 422, "colour"),
    ({"task": "ad-copy", "attributes": ATTRIBUTES, "stream": True, "model": "nope"}, 404, "model"),
])
def test_bad_content_requests_name_the_field(client, assert_error, body, status, param):
    assert_error(client.post("/v1/content", json=body), status, param=param)


def test_unknown_content_id_is_404(client, assert_error):
    assert_error(client.get("/v1/content/cnt_missing"), 404, param="content_id")


def test_evaluate_scores_given_texts(client):
    texts = ["The Eagle is a French pub by the riverside.", "A cheap place."]
    body = client.post("/v1/evaluate", json={"task": "ad-copy", "attributes": ATTRIBUTES, "keywords": ["riverside"],
                                             "texts": texts}).json()
    first, second = body["candidates"]
    assert first["text"] == texts[0] and first["rank"] == 1
    assert any("missing keyword" in violation for violation in second["violations"])
    assert "perplexity" in first["scores"]


def test_library_save_search_edit_tag_export_delete(client):
    content = client.post("/v1/content", json={**CONTENT, "n": 1}).json()
    saved = client.post("/v1/library", json={"content_id": content["id"], "task": "ad-copy", "title": "Eagle launch",
                                             "text": content["text"], "tags": ["launch", "pub"], "language": "en"})
    assert saved.status_code == 201, saved.text
    item = saved.json()
    assert item["content_id"] == content["id"] and item["tags"] == ["launch", "pub"]
    chinese = client.post("/v1/library", json={"task": "ad-copy", "title": "连衣裙", "text": "简约时尚的连衣裙，宽松舒适。",
                                               "tags": ["秋冬"], "language": "zh"}).json()

    found = client.get("/v1/library", params={"q": "Eagle launch"}).json()
    assert found["total"] == 1 and found["data"][0]["id"] == item["id"]
    assert client.get("/v1/library", params={"q": "宽松"}).json()["data"][0]["id"] == chinese["id"]
    assert client.get("/v1/library", params={"tag": "秋冬"}).json()["total"] == 1

    edited = client.patch(f"/v1/library/{item['id']}", json={"text": "Edited copy by the river.", "tags": ["final"]}).json()
    assert edited["text"] == "Edited copy by the river." and edited["tags"] == ["final"]
    assert client.get(f"/v1/library/{item['id']}").json()["text"] == "Edited copy by the river."

    exported = client.get("/v1/library/export", params={"format": "json"})
    assert "attachment" in exported.headers["content-disposition"]
    assert {entry["id"] for entry in json.loads(exported.text)} >= {item["id"], chinese["id"]}
    rows = list(csv.DictReader(io.StringIO(client.get("/v1/library/export", params={"format": "csv", "tag": "final"}).text)))
    assert [row["id"] for row in rows] == [item["id"]]
    markdown = client.get("/v1/library/export", params={"format": "markdown", "q": "连衣裙"}).text
    assert "连衣裙" in markdown and "Eagle launch" not in markdown

    assert client.delete(f"/v1/library/{item['id']}").status_code == 204
    assert client.get(f"/v1/library/{item['id']}").status_code == 404


@pytest.mark.parametrize("method, path, body, status", [
    ("get", "/v1/library/missing-id", None, 404),
    ("patch", "/v1/library/missing-id", {"title": "x"}, 404),
    ("delete", "/v1/library/missing-id", None, 404),
    ("post", "/v1/library", {"task": "ad-copy", "title": "t", "text": ""}, 422),
    ("post", "/v1/library", {"task": "ad-copy", "title": "t", "text": "x", "tags": [""]}, 400),
    ("get", "/v1/library/export?format=pdf", None, 422),
    ("get", "/v1/library?limit=0", None, 422),
    ("get", f"/v1/library?offset={2**70}", None, 422),
])
def test_bad_library_requests(client, assert_error, method, path, body, status):
    response = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    assert_error(response, status)


def test_a_content_result_is_found_again_by_another_app_on_the_same_database(tmp_path, client_factory):
    first = client_factory(directory=tmp_path / "shared")
    body = first.post("/v1/content", json=CONTENT).json()
    first.__exit__(None, None, None)  # shut down, as a restart would
    second = client_factory(directory=tmp_path / "shared")
    assert second.get(f"/v1/content/{body['id']}").json() == body


def test_content_results_past_their_retention_are_deleted(tmp_path):
    from datetime import timedelta

    from aigc_studio.store.db import Database
    from aigc_studio.store.models import ContentResultRow, utc_now
    from aigc_studio.store.results import ContentResults

    database = Database(f"sqlite:///{tmp_path / 'results.db'}")
    results = ContentResults(database, retention_days=30)
    results.put("cnt_old", {"text": "old"})
    with database.session(write=True) as session:
        session.get(ContentResultRow, "cnt_old").created_at = utc_now() - timedelta(days=31)
    for index in range(100):  # pruning runs once per hundred writes
        results.put(f"cnt_{index}", {"text": str(index)})
    assert results.get("cnt_old") is None and results.get("cnt_99") == {"text": "99"}
    assert ContentResults(database, retention_days=0).get("cnt_0") == {"text": "0"}
