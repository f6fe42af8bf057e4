"""Auth, rate limits, body cap, CORS, health, metrics and structured logs."""

from __future__ import annotations

import json
import logging
import time

import pytest

from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.store.keys import create_key, revoke_key

MODEL = "e2e-copy"
COMPLETION = {"model": MODEL, "prompt": "name[The Eagle], eatType[pub]", "max_tokens": 8, "seed": 1}


def _database(client):
    return client.app.state.server.database


def test_no_key_needed_until_one_exists_then_bearer_required(client_factory, assert_error):
    client = client_factory()
    assert client.get("/v1/models").status_code == 200
    info, secret = create_key(_database(client), "ci")
    authenticator_reset(client)
    assert_error(client.get("/v1/models"), 401, code="missing_api_key")
    assert_error(client.get("/v1/models", headers={"Authorization": "Bearer aigc-wrong"}), 401, code="invalid_api_key")
    assert_error(client.get("/v1/models", headers={"Authorization": f"Basic {secret}"}), 401, code="invalid_api_key")
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    # Health, metrics and the studio's static files stay open: probes and the login page need no key.
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    revoke_key(_database(client), "ci")
    assert_error(client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"}), 401)


def authenticator_reset(client) -> None:
    """Keys changed in this process: make the next request read them instead of the cached answer."""
    client.app.state.authenticator.refresh()


def test_auth_required_mode_refuses_without_any_key(client_factory, assert_error):
    client = client_factory(auth="required")
    assert_error(client.post("/v1/completions", json=COMPLETION), 401)


def test_auth_off_mode_ignores_keys(client_factory):
    client = client_factory(auth="off")
    create_key(_database(client), "ignored")
    assert client.get("/v1/models").status_code == 200


def test_rate_limit_answers_429_with_retry_after(client_factory, assert_error):
    client = client_factory(rate_limit_per_minute=3)
    for _ in range(3):
        assert client.get("/v1/models").status_code == 200
    response = client.get("/v1/models")
    assert_error(response, 429, code="rate_limit_exceeded")
    assert int(response.headers["retry-after"]) >= 1


def test_rate_limit_is_per_key(client_factory):
    client = client_factory(rate_limit_per_minute=2)
    _, first = create_key(_database(client), "first")
    _, second = create_key(_database(client), "second")
    authenticator_reset(client)
    for _ in range(2):
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {first}"}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {first}"}).status_code == 429
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_a_key_with_its_own_limit(client_factory):
    client = client_factory(rate_limit_per_minute=100)
    _, secret = create_key(_database(client), "tight", rate_limit_per_minute=1)
    authenticator_reset(client)
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/v1/models", headers=headers).status_code == 200
    assert client.get("/v1/models", headers=headers).status_code == 429


def test_oversized_body_is_413_declared_or_streamed(client_factory, assert_error):
    client = client_factory(max_body_bytes=2048)
    big = {**COMPLETION, "prompt": "x" * 5000}
    assert_error(client.post("/v1/completions", json=big), 413, code="request_too_large")

    def chunks():  # no Content-Length: the cap is enforced while reading
        for _ in range(5):
            yield b" " * 1000
    response = client.post("/v1/completions", content=chunks(), headers={"content-type": "application/json"})
    assert_error(response, 413)
    assert client.post("/v1/completions", json=COMPLETION).status_code == 200


def test_cors_is_off_by_default_and_on_for_listed_origins(client_factory):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = client_factory()
    assert "access-control-allow-origin" not in closed.options("/v1/completions", headers=preflight).headers
    opened = client_factory(cors_origins=["https://app.example"])
    response = opened.options("/v1/completions", headers=preflight)
    assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_healthz_reports_models_and_database(client):
    assert client.get("/healthz").json() == {"status": "ok", "models": [MODEL], "database": True}


def test_metrics_count_requests_tokens_and_engine_state(client):
    client.post("/v1/completions", json=COMPLETION)
    client.post("/v1/completions", json={**COMPLETION, "stream": True})
    text = client.get("/metrics").text
    assert 'aigc_http_requests_total{method="POST",route="/v1/completions",status="200"}' in text
    assert "aigc_http_request_duration_seconds_bucket" in text
    assert 'aigc_engine_queue_depth{model="e2e-copy"} 0.0' in text
    assert 'aigc_engine_batch_size{model="e2e-copy"}' in text
    tokens = next(line for line in text.splitlines() if line.startswith('aigc_tokens_generated_total{model="e2e-copy"}'))
    assert float(tokens.split()[-1]) >= 8
    steps = next(line for line in text.splitlines() if line.startswith('aigc_engine_decode_steps_total{model="e2e-copy"}'))
    assert 1 <= float(steps.split()[-1]) <= float(tokens.split()[-1])
    assert 'aigc_time_to_first_token_seconds_count{model="e2e-copy"} 1.0' in text


def test_one_json_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="aigc_studio.server.access"):
        client.get("/v1/models", headers={"x-test": "1"})
    (record,) = [record for record in caplog.records if record.name == "aigc_studio.server.access"]
    line = json.loads(record.getMessage())
    assert line["method"] == "GET" and line["path"] == "/v1/models" and line["status"] == 200
    assert line["latency_ms"] >= 0 and "key_id" in line and line["route"] == "/v1/models"


def test_studio_is_served_at_root(client):
    response = client.get("/")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_api_docs_are_served(client, path):
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("engine_process", [False, True])
def test_full_engine_queue_answers_503_at_once(client_factory, assert_error, engine_process):
    client = client_factory(max_batch_size=1, max_queue=1, engine_process=engine_process)
    engine = client.app.state.server.models[MODEL].engine
    # One long request decoding and one waiting fill the engine; the next one must be refused, not queued.
    long = SamplingParams(max_tokens=100, min_tokens=100)
    busy = [engine.submit("name[The Eagle]", long)]
    deadline = time.monotonic() + 10
    while engine.stats().running_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    busy.append(engine.submit("name[The Eagle]", long))
    try:
        response = client.post("/v1/completions", json=COMPLETION)
        assert_error(response, 503, code="engine_overloaded")
        assert int(response.headers["retry-after"]) >= 1
    finally:
        for handle in busy:
            handle.cancel()


def test_the_log_line_names_the_key(client_factory, caplog):
    client = client_factory()
    info, secret = create_key(_database(client), "logged")
    authenticator_reset(client)
    with caplog.at_level(logging.INFO, logger="aigc_studio.server.access"):
        client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    (record,) = [record for record in caplog.records if record.name == "aigc_studio.server.access"]
    assert json.loads(record.getMessage())["key_id"] == info.id


def test_refilled_buckets_are_forgotten_so_memory_stays_bounded(monkeypatch):
    from aigc_studio.server import auth

    monkeypatch.setattr(auth, "MAX_BUCKETS", 3)
    limiter = auth.RateLimiter(per_minute=60)
    for caller in ("a", "b", "c", "d", "e"):
        limiter.check(caller)
    # Each caller spent one token of 60; at one token a second they refill within about a second.
    time.sleep(1.1)
    limiter.check("f")
    assert set(limiter._buckets) == {"f"}
