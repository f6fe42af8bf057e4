"""The assistant: a multi-turn conversation with clarification and handoff, personalisation from the customer's
history, personal data kept out of logs, the knowledge base and transcripts, bad input, and a reply model."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from aigc_studio.errors import AigcError
from aigc_studio.store.db import Database
from aigc_studio.support.assistant import Assistant, ensure_kb_router, kb_router_dir
from aigc_studio.support.customers import CustomerNotFoundError, load_customers

from .conftest import assistant_settings

# Personal data a customer might type: an e-mail, a mainland mobile number and a Luhn-valid Visa number.
EMAIL, PHONE, CARD = "alice.chen@example.com", "13812345678", "4111 1111 1111 1111"


def tuned(assistant: Assistant, **values: float) -> Assistant:
    """The same assistant with other thresholds (the seven-intent fixture router is more confident than a
    77-intent one, so the margin that makes "card delivery" ambiguous between two delivery intents is wider)."""
    assistant.settings = assistant.settings.model_copy(update=values)
    return assistant


def test_a_conversation_with_clarification_and_handoff(assistant: Assistant) -> None:
    tuned(assistant, clarify_margin=0.4)
    hello = assistant.reply("s1", "C1001", "Hi")
    assert hello.action == "greet" and "Alice" in hello.text and not hello.sources

    answer = assistant.reply("s1", "C1001", "my card hasn't arrived")
    assert answer.action == "answer" and answer.intent == "card_arrival" and answer.confidence > 0.5
    [source] = answer.sources
    entry = assistant.kb.get(source.id)
    assert entry.intent == "card_arrival" and source.title == entry.title
    assert entry.text in answer.text  # grounded on the entry it names

    vague = assistant.reply("s1", "C1001", "card delivery")
    assert vague.action == "clarify" and not vague.handoff
    assert {vague.intent, vague.alternatives[0][0]} == {"card_arrival", "card_delivery_estimate"}
    assert "1)" in vague.text and "2)" in vague.text
    offered = assistant._session("s1").pending["options"]
    settled = assistant.reply("s1", "C1001", "2")
    assert settled.action == "answer" and settled.intent == offered[1]
    assert assistant._session("s1").status == "active"

    person = assistant.reply("s1", "C1001", "can I talk to a human please?")
    assert person.action == "handoff" and person.handoff and person.ticket_id
    ticket = assistant.ticket(person.ticket_id)
    assert ticket.status == "open" and ticket.session_id == "s1" and ticket.category == "handoff"
    assert "asked for a person" in ticket.summary and "Alice Chen" in ticket.summary
    assert [m["role"] for m in ticket.transcript] == ["customer", "assistant"] * 5
    assert ticket.transcript[2]["text"] == "my card hasn't arrived"
    assert ticket in assistant.tickets(status="open")

    # While handed off, messages go to the ticket, not to the router.
    waiting = assistant.reply("s1", "C1001", "hello? anyone there?")
    assert waiting.handoff and waiting.ticket_id == person.ticket_id and waiting.intent is None
    last_seen = waiting.message_id
    message = assistant.agent_reply(person.ticket_id, "Hi Alice, I have re-sent your card today.", agent="Sam")
    [seen] = assistant.messages("s1", after=last_seen)
    assert seen.role == "agent" and seen.id == message.id and "re-sent your card" in seen.text
    assert assistant.ticket(person.ticket_id).status == "answered"
    assistant.close_ticket(person.ticket_id)
    assert assistant.ticket(person.ticket_id).status == "closed"
    back = assistant.reply("s1", "C1001", "How do I change my PIN?")
    assert back.action == "answer" and back.intent == "change_pin" and not back.handoff


def test_low_confidence_hands_off_with_the_reason(assistant: Assistant) -> None:
    tuned(assistant, handoff_threshold=0.95, clarify_margin=0.0)
    reply = assistant.reply("s2", "C1003", "I need help")
    assert reply.action == "handoff" and reply.confidence < 0.95
    assert "low confidence" in assistant.ticket(reply.ticket_id).summary
    assert "colleague" in reply.text


def test_a_chinese_request_for_a_person_hands_off(assistant: Assistant) -> None:
    reply = assistant.reply("s3", "C1003", "转人工")
    assert reply.handoff and "人工" in reply.text


def test_replies_are_personalised_from_profile_and_history(assistant: Assistant) -> None:
    alice = assistant.reply("a", "C1001", "my card hasn't arrived")
    # Premium plan, her posted card order, and an apology naming last week's complaint ticket.
    assert "Alice" in alice.text and "Premium" in alice.text and "ORD-5521" in alice.text
    assert "T-0907" in alice.text and alice.text.index("sorry") < alice.text.index("Cards usually arrive")
    daniel = assistant.reply("d", "C1002", "my card hasn't arrived")
    # Formal by preference, Business plan; his only ticket is four months old: no apology.
    assert "Dear Daniel Okafor" in daniel.text and "Business" in daniel.text and daniel.tone == "formal"
    assert "sorry" not in daniel.text and "T-0655" not in daniel.text
    friendly = assistant.reply("d", "C1002", "my card hasn't arrived", tone="friendly")
    assert friendly.text.startswith("Hi Daniel")
    priya = assistant.reply("p", "C1003", "my card hasn't arrived")
    assert "Standard" in priya.text and "ORD-" not in priya.text and "sorry" not in priya.text


def test_personal_data_never_reaches_logs_kb_transcripts_or_audit(assistant: Assistant, support_home: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    kb_before = [e.to_dict() for e in assistant.kb.list_entries()]
    caplog.set_level(logging.DEBUG)
    message = f"my card {CARD} hasn't arrived, mail me at {EMAIL} or call {PHONE}"
    answer = assistant.reply("pii", "C1001", message)
    handoff = assistant.reply("pii", "C1001", f"I want a human agent, my number is {PHONE}")
    assert answer.action == "answer" and handoff.handoff
    secrets = (EMAIL, PHONE, CARD, CARD.replace(" ", ""))
    stored = [m.text for m in assistant.messages("pii")]
    assert "<EMAIL_1>" in stored[0] and "<PHONE_1>" in stored[0] and "<BANK_CARD_1>" in stored[0]
    ticket = assistant.ticket(handoff.ticket_id)
    database = Database(assistant_settings(support_home).database_url)
    with database.session() as session:
        tables = {name: json.dumps([list(row) for row in session.execute(text(f"SELECT * FROM {name}"))], default=str)
                  for name in ("support_messages", "support_tickets", "kb_entries", "kb_entry_versions", "audit_records")}
    database.close()
    assert "support-reply" in tables["audit_records"]  # the replies were audited
    for secret in secrets:
        assert secret not in caplog.text
        assert all(secret not in value for value in stored)
        assert secret not in json.dumps(ticket.to_dict())
        for name, dump in tables.items():
            assert secret not in dump, name
        assert secret not in answer.text and secret not in handoff.text
    assert [e.to_dict() for e in assistant.kb.list_entries()] == kb_before


def test_bad_input_is_one_clear_error(assistant: Assistant, tmp_path: Path) -> None:
    for empty in ("", "   \n"):
        with pytest.raises(AigcError, match="the message is empty") as caught:
            assistant.reply("b", "C1001", empty)
        assert caught.value.status == 400 and caught.value.param == "message"
    with pytest.raises(AigcError, match="more than the 2,000 allowed") as caught:
        assistant.reply("b", "C1001", "x" * 2001)
    assert caught.value.status == 413
    with pytest.raises(CustomerNotFoundError, match="no customer with id 'C9999'") as caught:
        assistant.reply("b", "C9999", "hello")
    assert caught.value.status == 404
    assistant.reply("mine", "C1001", "Hi")
    with pytest.raises(AigcError, match="belongs to another customer") as caught:
        assistant.reply("mine", "C1002", "Hi")
    assert caught.value.status == 403
    with pytest.raises(AigcError, match="session_id must be"):
        assistant.reply("bad id!", "C1001", "Hi")
    with pytest.raises(AigcError, match="unknown tone"):
        assistant.reply("b", "C1001", "Hi", tone="sarcastic")
    with pytest.raises(AigcError, match="no ticket 'T-4040'"):
        assistant.agent_reply("T-4040", "hello")
    with pytest.raises(AigcError, match="has no chat session"):  # a ticket from the history file
        assistant.agent_reply("T-0907", "hello")
    # Customers files: empty, not JSON, a field missing.
    database = assistant.db
    for content, problem in [("", "is empty"), ("{oops", "not valid JSON"),
                             ('{"customers": [{"id": "X", "plan": "Standard"}]}', r"customers\.0\.name: Field required")]:
        path = tmp_path / "customers.json"
        path.write_text(content, encoding="utf-8")
        with pytest.raises(AigcError, match=problem):
            load_customers(database, path)


def test_the_kb_router_is_retrained_only_when_faq_entries_change(assistant: Assistant, support_home: Path) -> None:
    directory = kb_router_dir(assistant_settings(support_home).support.index_dir)
    stamp = (directory / "model.safetensors").stat().st_mtime_ns
    ensure_kb_router(assistant.kb, directory)
    assert (directory / "model.safetensors").stat().st_mtime_ns == stamp  # unchanged knowledge base: reused
    faq = support_home / "extra.csv"
    faq.write_text("question,answer,intent\nCan I get a virtual card?,Yes: order one under Card > New virtual card.,"
                   "getting_virtual_card\n", encoding="utf-8")
    assistant.kb.add_files([faq])
    router = ensure_kb_router(assistant.kb, directory)
    assert "getting_virtual_card" in router.labels and len(router.labels) == 8



def test_changes_made_by_another_process_reach_the_next_reply(assistant: Assistant, support_home: Path) -> None:
    # The CLI beside a running server: its own KnowledgeBase on the same database and index folder.
    from aigc_studio.support.kb import KnowledgeBase

    settings = assistant_settings(support_home)
    before = assistant.reply("other-process", "C1001", "Can I get a virtual card?")
    assert before.intent != "getting_virtual_card"
    database = Database(settings.database_url)
    faq = support_home / "virtual.csv"
    faq.write_text("question,answer,intent\nCan I get a virtual card?,Yes: order one under Card > New virtual card.,"
                   "getting_virtual_card\n", encoding="utf-8")
    KnowledgeBase(database, index_dir=settings.support.index_dir).add_files([faq])
    database.close()
    after = assistant.reply("other-process-2", "C1001", "Can I get a virtual card?")
    assert after.intent == "getting_virtual_card" and "New virtual card" in after.text
    assert "getting_virtual_card" in assistant.router.labels
    assert any(hit.entry.intent == "getting_virtual_card" for hit in assistant.kb.search("virtual card", k=3))
    assert assistant.refresh() == len(assistant.router.labels)  # nothing new: the router stays as it is


# -- a reply model behind an OpenAI-compatible server ----------------------------------------------------------


class ChatStub:
    """An OpenAI-shaped chat server that records each prompt and answers with a fixed reply."""

    def __init__(self, reply: str) -> None:
        self.prompts: list[str] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> JSONResponse:
            body = await request.json()
            self.prompts.append(body["messages"][-1]["content"])
            return JSONResponse({"id": "chat-1", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": reply}}],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@pytest.fixture
def chat_stub() -> Iterator[ChatStub]:
    stub = ChatStub("Hi Alice, cards usually arrive 3-5 working days after posting. Call me on 13987654321.")
    stub.thread.start()
    while not stub.server.started:
        time.sleep(0.05)
    yield stub
    stub.server.should_exit = True
    stub.thread.join(timeout=10)


def test_a_reply_model_writes_from_the_retrieved_passages(assistant: Assistant, chat_stub: ChatStub) -> None:
    pytest.importorskip("openai")
    from aigc_studio.backends.openai_compat import OpenAICompatBackend

    assistant.backend = OpenAICompatBackend(name="stub", base_url=f"http://127.0.0.1:{chat_stub.port}/v1", api="chat")
    reply = assistant.reply("llm", "C1001", f"my card hasn't arrived, my email is {EMAIL}")
    [prompt] = chat_stub.prompts
    card_entry = assistant.kb.get(reply.sources[0].id)
    assert reply.action == "answer" and reply.intent == "card_arrival" and card_entry.intent == "card_arrival"
    # The prompt carries the passages, the profile and the apology the history calls for, never the e-mail.
    assert card_entry.text in prompt and "Alice Chen, Premium plan" in prompt and "T-0907" in prompt
    assert EMAIL not in prompt and "<EMAIL_1>" in prompt
    # The model's words are the reply, after governance: the phone number it made up is redacted.
    assert reply.text.startswith("Hi Alice, cards usually arrive") and "13987654321" not in reply.text
    assert {"kind": "pii", "type": "PHONE", "action": "redact"} in reply.flags
    assert 1 <= len(reply.sources) <= 3



def test_a_recent_complaint_is_apologised_for_once_a_session(assistant: Assistant) -> None:
    first = assistant.reply("once", "C1001", "my card hasn't arrived")
    second = assistant.reply("once", "C1001", "How do I change my PIN?")
    assert "T-0907" in first.text and "sorry" in first.text
    assert "T-0907" not in second.text and "sorry" not in second.text and "Premium" in second.text
