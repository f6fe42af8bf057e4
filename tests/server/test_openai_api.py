"""The OpenAI-compatible endpoints through FastAPI's test client: shapes, parameters and every bad input."""

from __future__ import annotations

import math

import pytest

MODEL = "e2e-copy"
ATTRIBUTES = "name[The Eagle], eatType[pub], food[French], area[riverside]"


def test_models_lists_the_loaded_model(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    (card,) = body["data"]
    assert card["id"] == MODEL and card["object"] == "model" and card["owned_by"] == "aigc-studio"
    assert card["prompt_format"] == "records" and len(card["weights_sha256"]) == 64


def test_completion_has_openai_shape_and_usage(client):
    response = client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "max_tokens": 40, "seed": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["model"] == MODEL
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["text"].strip() and choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_completion_equals_library_generation_for_the_same_seed(client_factory, backend):
    client = client_factory(watermark=False)
    params = backend.default_params().replace(n=3, seed=11, max_tokens=40, temperature=0.9, top_p=0.95)
    expected = [candidate.text for candidate in backend.generate([ATTRIBUTES], params)[0].candidates]
    body = client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "n": 3, "seed": 11,
                                                "max_tokens": 40, "temperature": 0.9, "top_p": 0.95}).json()
    assert [choice["text"] for choice in body["choices"]] == expected
    assert [choice["index"] for choice in body["choices"]] == [0, 1, 2]


def test_several_prompts_give_n_choices_each_in_order(client):
    prompts = [ATTRIBUTES, "name[Alimentum], food[Chinese], priceRange[cheap]"]
    body = client.post("/v1/completions", json={"model": MODEL, "prompt": prompts, "n": 2, "seed": 3,
                                                "max_tokens": 30}).json()
    assert [choice["index"] for choice in body["choices"]] == [0, 1, 2, 3]
    assert all("Eagle" in choice["text"] for choice in body["choices"][:2])
    assert all("Alimentum" in choice["text"] for choice in body["choices"][2:])


def test_stop_string_cuts_the_text(client):
    free = client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "seed": 5, "max_tokens": 40,
                                                "temperature": 0}).json()["choices"][0]["text"]
    # A word the model wrote itself: slot values (The Eagle) are placeholders while decoding, so not a stop word.
    word = next(word for word in free.split()[1:] if word not in ATTRIBUTES)
    stopped = client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "seed": 5, "max_tokens": 40,
                                                   "temperature": 0, "stop": [word]}).json()["choices"][0]
    assert stopped["text"] == free[: free.index(word)]
    assert stopped["finish_reason"] == "stop"


def test_max_tokens_limits_length(client):
    # The model's descriptions run to a dozen tokens or more, so three tokens always end by length.
    body = client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "max_tokens": 3, "seed": 2}).json()
    assert body["usage"]["completion_tokens"] == 3
    assert body["choices"][0]["finish_reason"] == "length"


def test_completion_logprobs_in_openai_format(client):
    body = client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "max_tokens": 10, "seed": 4,
                                                "logprobs": 3}).json()
    logprobs = body["choices"][0]["logprobs"]
    count = len(logprobs["tokens"])
    assert count == body["usage"]["completion_tokens"]
    assert len(logprobs["token_logprobs"]) == len(logprobs["top_logprobs"]) == len(logprobs["text_offset"]) == count
    assert all(value <= 0 for value in logprobs["token_logprobs"])
    assert all(len(top) == 3 for top in logprobs["top_logprobs"])


def test_chat_uses_the_last_user_message_as_attributes(client):
    body = client.post("/v1/chat/completions", json={
        "model": MODEL, "seed": 8, "max_tokens": 40, "logprobs": True, "top_logprobs": 2,
        "messages": [{"role": "system", "content": "You write ad copy."},
                     {"role": "user", "content": [{"type": "text", "text": ATTRIBUTES}]}],
    }).json()
    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant" and "Eagle" in message["content"]
    content = body["choices"][0]["logprobs"]["content"]
    assert content and all(len(token["top_logprobs"]) == 2 and token["bytes"] for token in content)


def test_streamed_completion_ends_with_done_and_joins_to_the_text(client_factory, sse_events):
    client = client_factory(watermark=False)
    request = {"model": MODEL, "prompt": ATTRIBUTES, "seed": 9, "max_tokens": 40, "n": 2}
    whole = client.post("/v1/completions", json=request).json()
    response = client.post("/v1/completions", json={**request, "stream": True, "stream_options": {"include_usage": True}})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["text"]
    assert [texts[0], texts[1]] == [choice["text"] for choice in whole["choices"]]
    assert usage["choices"] == [] and usage["usage"] == whole["usage"]


def test_streamed_chat_sends_role_then_content_deltas(client, sse_events):
    response = client.post("/v1/chat/completions", json={
        "model": MODEL, "stream": True, "seed": 1, "max_tokens": 30, "messages": [{"role": "user", "content": ATTRIBUTES}],
    })
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(event["object"] == "chat.completion.chunk" for event in events[:-1])
    text = "".join(event["choices"][0]["delta"].get("content") or "" for event in events[1:-1])
    assert "Eagle" in text
    assert events[-2]["choices"][0]["finish_reason"] in ("stop", "length")


# --------------------------------------------------------------------------------------------- bad input
def test_unknown_model_is_404(client, assert_error):
    assert_error(client.post("/v1/completions", json={"model": "gpt-9", "prompt": "x"}), 404, param="model",
                 code="model_not_found")


def test_malformed_json_is_400(client, assert_error):
    response = client.post("/v1/completions", content=b'{"model": "e2e-copy", "prompt": ',
                           headers={"content-type": "application/json"})
    assert_error(response, 400, code="invalid_json")


def test_body_that_is_not_an_object_is_400(client, assert_error):
    assert_error(client.post("/v1/chat/completions", json=[1, 2]), 400)


@pytest.mark.parametrize("field, value", [("max_tokens", 65), ("n", 9)])
def test_caps_are_400_naming_the_parameter(client, field, value, assert_error):
    error = assert_error(client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, field: value}),
                         400, param=field)
    assert "cap" in error["message"]


@pytest.mark.parametrize("body, param", [
    ({"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 3}, "temperature"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 99}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "seed": 2**64}, "seed"),
])
def test_invalid_values_are_422_naming_the_field(client, body, param, assert_error):
    assert_error(client.post("/v1/chat/completions", json=body), 422, param=param)


@pytest.mark.parametrize("body, param", [
    ({"suffix": "end"}, "suffix"),
    ({"best_of": 3}, "best_of"),
    ({"logit_bias": {"50": 1}}, "logit_bias"),
    ({"prompt": []}, "prompt"),
    ({"min_tokens": 50, "max_tokens": 10}, "min_tokens"),
])
def test_unsupported_or_inconsistent_options_are_400(client, body, param, assert_error):
    assert_error(client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, **body}), 400, param=param)


def test_records_chat_without_user_message_is_400(client, assert_error):
    assert_error(client.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "system", "content": "x"}]}),
                 400, param="messages")


def test_unknown_route_is_an_openai_404(client, assert_error):
    assert_error(client.get("/v1/nothing"), 404)


def test_logprobs_are_finite_log_probabilities(client):
    body = client.post("/v1/chat/completions", json={"model": MODEL, "seed": 2, "max_tokens": 12, "logprobs": True,
                                                     "messages": [{"role": "user", "content": ATTRIBUTES}]}).json()
    values = [token["logprob"] for token in body["choices"][0]["logprobs"]["content"]]
    assert values and all(math.isfinite(value) and value <= 0 for value in values)


@pytest.mark.parametrize("body, status, param", [
    ({"num_beams": 2**40}, 400, "num_beams"),
    ({"repetition_penalty": 1e-300}, 422, "repetition_penalty"),
])
def test_extreme_values_are_refused_not_crashes(client, assert_error, body, status, param):
    assert_error(client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, **body}), status, param=param)


def test_a_vanishing_temperature_is_greedy(client):
    greedy = client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "temperature": 0, "seed": 1})
    tiny = client.post("/v1/completions", json={"model": MODEL, "prompt": ATTRIBUTES, "temperature": 1e-300, "seed": 2})
    assert tiny.status_code == 200 and tiny.json()["choices"][0]["text"] == greedy.json()["choices"][0]["text"]


def test_a_text_model_reads_a_chat_as_a_transcript():
    from aigc_studio.server.openai_serving import TRANSCRIPT_STOPS, chat_prompt
    from aigc_studio.server.protocol import ChatMessage

    messages = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi"),
                ChatMessage(role="assistant", content="Hello."), ChatMessage(role="user", content="A slogan?")]
    prompt, stops = chat_prompt(messages, "text")
    assert prompt == "System: Be brief.\nUser: Hi\nAssistant: Hello.\nUser: A slogan?\nAssistant:"
    assert stops == TRANSCRIPT_STOPS
    assert chat_prompt(messages, "records") == ("A slogan?", [])


def test_stream_chunks_coalesce_one_choice_per_chunk():
    from types import SimpleNamespace

    from aigc_studio.server.streaming import coalesced

    events = [(0, SimpleNamespace(candidate_index=1, text="a")), (0, SimpleNamespace(candidate_index=0, text="b")),
              (1, SimpleNamespace(candidate_index=0, text="c")), (0, SimpleNamespace(candidate_index=1, text="d"))]
    grouped = coalesced(events, lambda prompt_index, event: prompt_index * 2 + event.candidate_index)
    assert [(index, "".join(e.text for e in group)) for index, group in grouped] == [(1, "ad"), (0, "b"), (2, "c")]
