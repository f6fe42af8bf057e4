"""The /v1/support routes through FastAPI's TestClient: chat (plain and streamed), session polling, the
knowledge base, the agent queue, and OpenAI-style errors for bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aigc_studio.server.app import create_app

from .conftest import assistant_settings


def events(body: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body (``"[DONE]"`` kept as the string)."""
    payloads = [line[len("data: "):] for line in body.splitlines() if line.startswith("data: ")]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


def check_error(response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


@pytest.fixture
def client(support_home: Path) -> Iterator[TestClient]:
    """An app without generation models (the assistant composes from templates) on the support installation."""
    settings = assistant_settings(support_home, clarify_margin=0.4)
    with TestClient(create_app(settings, models=[])) as test_client:
        yield test_client


def chat(client: TestClient, message: str, session: str = "w1", customer: str = "C1001", **extra: Any):
    return client.post("/v1/support/chat", json={"session_id": session, "customer_id": customer, "message": message,
                                                 **extra})


def test_chat_answers_with_sources_then_hands_off_and_the_agent_reply_reaches_the_session(client: TestClient) -> None:
    answer = chat(client, "my card hasn't arrived")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "support.reply" and body["action"] == "answer" and body["intent"] == "card_arrival"
    assert 0.5 < body["confidence"] <= 1 and body["handoff"] is False and body["ticket_id"] is None
    [source] = body["sources"]
    entries = {e["id"]: e for e in client.get("/v1/support/kb").json()["data"]}
    assert entries[source["id"]]["intent"] == "card_arrival" and entries[source["id"]]["text"] in body["reply"]

    handoff = chat(client, "I want to speak to a person").json()
    assert handoff["handoff"] is True and handoff["action"] == "handoff"
    queue = client.get("/v1/support/tickets", params={"status": "open"}).json()["data"]
    assert [t["id"] for t in queue] == [handoff["ticket_id"]]
    assert queue[0]["customer_name"] == "Alice Chen" and queue[0]["transcript"][0]["text"] == "my card hasn't arrived"

    reply = client.post(f"/v1/support/tickets/{handoff['ticket_id']}/reply", json={"text": "Sent a new card today.",
                                                                                 "agent": "Sam"})
    assert reply.status_code == 200 and reply.json()["role"] == "agent"
    polled = client.get("/v1/support/sessions/w1/messages", params={"after": handoff["message_id"]}).json()
    assert polled["status"] == "handed_off" and [m["text"] for m in polled["data"]] == ["Sent a new card today."]
    assert client.get(f"/v1/support/tickets/{handoff['ticket_id']}").json()["status"] == "answered"
    closed = client.post(f"/v1/support/tickets/{handoff['ticket_id']}/close").json()
    assert closed["status"] == "closed"
    assert client.get("/v1/support/sessions/w1/messages").json()["status"] == "active"
    assert client.get("/v1/support/customers/C1001").json()["plan"] == "Premium"


def test_streamed_chat_sends_pieces_then_the_whole_reply(client: TestClient) -> None:
    response = chat(client, "How do I change my PIN?", session="stream", stream=True)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    payloads = events(response.text)
    assert payloads[-1] == "[DONE]"
    final = payloads[-2]
    chunks = payloads[:-2]
    assert final["object"] == "support.reply" and final["intent"] == "change_pin"
    assert len(chunks) > 3 and all(c["object"] == "support.reply.chunk" for c in chunks)
    assert "".join(c["delta"] for c in chunks) == final["reply"]


def test_a_clarifying_question_and_its_answer(client: TestClient) -> None:
    question = chat(client, "card delivery", session="clar").json()
    assert question["action"] == "clarify" and len(question["alternatives"]) == 2
    answer = chat(client, "1", session="clar").json()
    assert answer["action"] == "answer" and answer["intent"] == question["intent"]


def test_bad_input_gets_openai_style_errors(client: TestClient) -> None:
    error = check_error(chat(client, "hello", customer="C404"), 404, "customer_id")
    assert "no customer with id 'C404'" in error["message"]
    check_error(chat(client, ""), 400, "message")
    check_error(chat(client, "   "), 400, "message")
    assert check_error(chat(client, "x" * 2001), 413, "message")["code"] == "message_too_long"
    check_error(client.post("/v1/support/chat", json={"customer_id": "C1001"}), 422, "message")
    check_error(client.post("/v1/support/chat", json={"customer_id": "C1001", "message": "hi", "tone": "rude"}), 422)
    blocked = check_error(chat(client, "can you sell me cocaine with my card?", session="blocked"), 400)
    assert blocked["code"] == "content_policy_violation" and "illicit" in blocked["message"]
    assert client.get("/v1/support/sessions/blocked/messages").json()["data"] == []  # nothing stored
    streamed_bad = chat(client, "hello", session="sx", customer="C404", stream=True)
    check_error(streamed_bad, 404)  # refused before the stream starts
    check_error(client.get("/v1/support/sessions/nope/messages"), 404, "session_id")
    check_error(client.get("/v1/support/tickets/T-4040"), 404, "ticket_id")
    check_error(client.post("/v1/support/tickets/T-4040/reply", json={"text": "hi"}), 404)
    check_error(client.get("/v1/support/tickets", params={"status": "lost"}), 400, "status")
    check_error(client.delete("/v1/support/kb/nothing-here"), 404, "entry_id")
    check_error(client.post("/v1/support/kb", json={"source": "faq.jsonl"}), 400, "entries")
    check_error(client.post("/v1/support/kb", json={"source": "notes.exe", "text": "x"}), 422)


def test_kb_endpoints_add_update_and_remove_and_retrain_the_router(client: TestClient) -> None:
    rows = [{"question": "Can I get a virtual card?", "answer": "Yes: order one under Card > New virtual card.",
             "intent": "getting_virtual_card"},
            {"question": "Is there an ATM fee?", "answer": "Two free ATM withdrawals a month, then 2% per withdrawal.",
             "intent": "cash_withdrawal_charge"}]
    added = client.post("/v1/support/kb", json={"source": "extra.jsonl", "entries": rows}).json()
    assert len(added["added"]) == 2 and added["router_intents"] == 9
    assert chat(client, "can I get a virtual card?", session="kb").json()["intent"] == "getting_virtual_card"
    rows[1]["answer"] = "Three free ATM withdrawals a month, then 2% per withdrawal."
    updated = client.post("/v1/support/kb", json={"source": "extra.jsonl", "entries": rows}).json()
    assert len(updated["updated"]) == 1 and len(updated["unchanged"]) == 1
    listed = client.get("/v1/support/kb", params={"source": "extra.jsonl"}).json()["data"]
    assert [e["version"] for e in listed] == [1, 2]
    removed = client.delete(f"/v1/support/kb/{listed[0]['id']}").json()
    assert removed["removed"] == [listed[0]["id"]]
    assert client.delete("/v1/support/kb/extra.jsonl").json()["removed"] == [listed[1]["id"]]
    assert client.get("/v1/support/kb", params={"source": "extra.jsonl"}).json()["data"] == []
    document = client.post("/v1/support/kb", json={"source": "branches.md",
                                                   "text": "# Branches\n\nOur branch in Leeds opens at 9."}).json()
    assert len(document["added"]) == 1
