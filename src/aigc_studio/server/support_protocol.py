"""Request and response bodies of the customer-service routes (``/v1/support/...``, docs/support.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# A generous bound for the JSON field itself; the assistant's own limit ([support] max_message_chars) answers 413.
MAX_FIELD_CHARS = 100_000


class SupportChatRequest(BaseModel):
    """One customer message."""

    model_config = {"extra": "forbid"}

    session_id: str | None = Field(None, description="The conversation; omit to start one (its id is in the reply).")
    customer_id: str = Field(..., min_length=1, max_length=64)
    message: str = Field(..., max_length=MAX_FIELD_CHARS)
    tone: Literal["friendly", "formal"] | None = None
    stream: bool = False


class SupportSource(BaseModel):
    id: str
    title: str


class SupportAlternative(BaseModel):
    intent: str
    confidence: float


class SupportChatResponse(BaseModel):
    """The assistant's reply (``object: "support.reply"``); streamed, the last event carries it whole."""

    id: str
    object: Literal["support.reply"] = "support.reply"
    created: int
    session_id: str
    customer_id: str
    reply: str
    action: Literal["greet", "answer", "clarify", "handoff"]
    intent: str | None
    confidence: float | None
    alternatives: list[SupportAlternative]
    sources: list[SupportSource]
    handoff: bool
    ticket_id: str | None
    tone: str
    message_id: int | None
    flags: list[dict[str, Any]] = Field(default_factory=list)


class SupportChatChunk(BaseModel):
    """A piece of a streamed reply."""

    id: str
    object: Literal["support.reply.chunk"] = "support.reply.chunk"
    session_id: str
    delta: str


class SupportMessage(BaseModel):
    id: int
    session_id: str
    role: Literal["customer", "assistant", "agent"]
    text: str
    action: str | None
    intent: str | None
    confidence: float | None
    sources: list[SupportSource]
    created_at: str


class SupportMessageList(BaseModel):
    object: Literal["list"] = "list"
    session_id: str
    status: str
    data: list[SupportMessage]


class KbEntry(BaseModel):
    id: str
    source: str
    kind: str
    title: str
    text: str
    intent: str | None
    tags: list[str]
    version: int
    updated_at: str


class KbEntryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KbEntry]


class KbFaqRow(BaseModel):
    model_config = {"extra": "forbid"}

    question: str = Field(..., min_length=1)
    answer: str = Field(..., min_length=1)
    intent: str | None = None
    tags: list[str] = Field(default_factory=list)
    id: str | None = None


class KbUploadRequest(BaseModel):
    """The content of one knowledge file: FAQ rows, or a document's text (Markdown, HTML or plain text).

    Posting the same ``source`` again updates that file: changed entries get a new version, missing ones are removed.
    """

    model_config = {"extra": "forbid"}

    source: str = Field(..., min_length=1, max_length=200, pattern=r"^[\w.\- ]+\.(jsonl|md|html|htm|txt)$",
                        description="The file name entries are filed under: FAQ rows need .jsonl, a document .md/.html/.txt.")
    entries: list[KbFaqRow] | None = None
    text: str | None = None


class KbUploadResponse(BaseModel):
    source: str
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    removed: list[str]
    pii_redacted: int
    router_intents: int | None = Field(None, description="Intents of the retrained knowledge-base router, if one was trained.")


class KbRemoveResponse(BaseModel):
    removed: list[str]


class TicketMessage(BaseModel):
    role: str
    text: str
    at: str


class Ticket(BaseModel):
    id: str
    customer_id: str
    customer_name: str
    session_id: str | None
    status: Literal["open", "answered", "closed"]
    category: str
    subject: str
    summary: str
    transcript: list[TicketMessage]
    created_at: str
    updated_at: str


class TicketList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Ticket]


class AgentReplyRequest(BaseModel):
    model_config = {"extra": "forbid"}

    text: str = Field(..., max_length=MAX_FIELD_CHARS)
    agent: str | None = Field(None, max_length=64, description="Who answers (kept in the audit log).")
    close: bool = Field(False, description="Close the ticket with this reply; the session goes back to the assistant.")


class Customer(BaseModel):
    id: str
    name: str
    plan: str
    tone: str | None
    language: str
    orders: list[dict[str, Any]]
    tickets: list[dict[str, Any]]
