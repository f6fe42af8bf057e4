"""Customer-service routes: chat with the assistant, its knowledge base, and the agent queue (docs/support.md).

The assistant is built on the first request that needs it (loading the embedder and the router takes
seconds, and a server that never sees a support request should not pay for it). It follows the knowledge base
as the database holds it (:meth:`~aigc_studio.support.assistant.Assistant.refresh`): after the knowledge-base
routes change it, and before every reply, so files added with the CLI beside a running server count at once.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from aigc_studio.errors import AigcError
from aigc_studio.server import protocol as p
from aigc_studio.server import support_protocol as sp
from aigc_studio.server.errors import ApiError
from aigc_studio.server.state import EngineBackend, ServerState
from aigc_studio.server.streaming import DONE, SSE_HEADERS, sse
from aigc_studio.support.assistant import Assistant, Reply, get_ticket, list_tickets

router = APIRouter(prefix="/v1/support", tags=["support"], responses=p.ERROR_RESPONSES)
_BUILD_LOCK = threading.Lock()


def _state(request: Request) -> ServerState:
    return request.app.state.server


def _assistant(request: Request) -> Assistant:
    app_state = request.app.state
    with _BUILD_LOCK:
        assistant = getattr(app_state, "support_assistant", None)
        if assistant is None:
            state = _state(request)
            reply_model = state.settings.support.reply_model
            # A reply model the server already serves writes through its engine, batched with the other traffic.
            backend = EngineBackend(state.models[reply_model]) if reply_model in state.models else None
            assistant = Assistant.from_settings(state.settings, state.database,
                                                governance=state.governance, backend=backend)
            app_state.support_assistant = assistant
    return assistant


def _reply_body(reply: Reply, reply_id: str) -> sp.SupportChatResponse:
    data = reply.to_dict()
    return sp.SupportChatResponse(
        id=reply_id, created=int(time.time()), session_id=reply.session_id, customer_id=reply.customer_id,
        reply=reply.text, action=reply.action, intent=reply.intent, confidence=data["confidence"],
        alternatives=data["alternatives"], sources=data["sources"], handoff=reply.handoff, ticket_id=reply.ticket_id,
        tone=reply.tone, message_id=reply.message_id, flags=reply.flags,
    )


@router.post("/chat", response_model=sp.SupportChatResponse)
async def chat(body: sp.SupportChatRequest, request: Request):
    """Answer one customer message: reply, sources, intent, confidence, and whether a person took over.

    With ``stream: true`` the reply comes as server-sent events (``support.reply.chunk`` pieces, then the whole
    ``support.reply``, then ``[DONE]``), released only after it passed moderation and the PII check.
    """
    api_key_id = getattr(request.state, "api_key_id", None)
    assistant = await anyio.to_thread.run_sync(_assistant, request)
    reply_id = f"support-{uuid.uuid4().hex}"
    if not body.stream:
        reply = await anyio.to_thread.run_sync(
            lambda: assistant.reply(body.session_id, body.customer_id, body.message, tone=body.tone, api_key_id=api_key_id))
        return _reply_body(reply, reply_id)
    # Errors (unknown customer, empty message) surface here, before the 200 of the stream is sent.
    reply, pieces = await anyio.to_thread.run_sync(
        lambda: assistant.stream_reply(body.session_id, body.customer_id, body.message, tone=body.tone,
                                       api_key_id=api_key_id))

    async def events():
        for piece in pieces:
            yield sse(sp.SupportChatChunk(id=reply_id, session_id=reply.session_id, delta=piece))
        yield sse(_reply_body(reply, reply_id))
        yield DONE

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/sessions/{session_id}/messages", response_model=sp.SupportMessageList)
def session_messages(session_id: str, request: Request,
                     after: int = Query(0, ge=0, description="Only turns with a larger id (the last one you have).")):
    """The session's turns (redacted), oldest first: the widget polls this for agents' replies."""
    assistant = _assistant(request)
    status = assistant.session_status(session_id)
    return sp.SupportMessageList(session_id=session_id, status=status["status"],
                                 data=[m.to_dict() for m in assistant.messages(session_id, after=after)])


@router.get("/customers/{customer_id}", response_model=sp.Customer)
def customer(customer_id: str, request: Request):
    """A customer's profile, orders and tickets (the agent console shows them beside the transcript)."""
    from aigc_studio.support.customers import get_profile

    return get_profile(_state(request).database, customer_id).to_dict()


# ------------------------------------------------------------------------------------------ knowledge base


@router.get("/kb", response_model=sp.KbEntryList)
def kb_list(request: Request, source: str | None = Query(None, description="Only the entries of this file.")):
    """The knowledge base's current entries (redacted), by file then position."""
    entries = _assistant(request).kb.list_entries(source)
    return sp.KbEntryList(data=[{k: v for k, v in e.to_dict().items() if k != "content_hash"} for e in entries])


@router.post("/kb", response_model=sp.KbUploadResponse)
def kb_upload(body: sp.KbUploadRequest, request: Request):
    """Add or update one knowledge file: FAQ rows (``source`` ending in .jsonl) or a document's ``text``."""
    is_faq = body.source.endswith(".jsonl")
    if is_faq and not body.entries:
        raise AigcError("a .jsonl source needs FAQ rows in 'entries' ({question, answer, intent?, tags?})", param="entries")
    if not is_faq and not (body.text and body.text.strip()):
        raise AigcError("a document source (.md, .html, .txt) needs its 'text'", param="text")
    if body.entries and body.text:
        raise AigcError("send either FAQ 'entries' or a document 'text', not both", param="text")
    assistant = _assistant(request)
    with tempfile.TemporaryDirectory(prefix="aigc-kb-") as folder:
        path = Path(folder) / body.source
        if is_faq:
            rows = [{k: v for k, v in row.model_dump().items() if v not in (None, [])} for row in body.entries]
            path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        else:
            path.write_text(body.text, encoding="utf-8")
        with assistant.lock:
            [report] = assistant.kb.add_files([path])
            intents = assistant.refresh()
    return sp.KbUploadResponse(source=report.source, added=report.added, updated=report.updated,
                               unchanged=report.unchanged, removed=report.removed, pii_redacted=report.pii_redacted,
                               router_intents=intents)


@router.delete("/kb/{entry_id}", response_model=sp.KbRemoveResponse)
def kb_remove(entry_id: str, request: Request):
    """Remove one entry by id, or every entry of a file by its name (their history stays)."""
    assistant = _assistant(request)
    if assistant.kb.get(entry_id) is None and entry_id not in dict(assistant.kb.sources()):
        raise ApiError(404, f"no knowledge-base entry or file {entry_id!r}; GET /v1/support/kb lists them",
                       code="not_found", param="entry_id")
    with assistant.lock:
        removed = assistant.kb.remove(entry_id)
        assistant.refresh()
    return sp.KbRemoveResponse(removed=removed)


# ------------------------------------------------------------------------------------------- agent queue


@router.get("/tickets", response_model=sp.TicketList)
def tickets(request: Request, status: str | None = Query(None, description="open, answered or closed."),
            customer_id: str | None = Query(None)):
    """Tickets, newest first: ``?status=open`` is the agent queue."""
    found = list_tickets(_state(request).database, status=status, customer_id=customer_id)
    return sp.TicketList(data=[t.to_dict() for t in found])


@router.get("/tickets/{ticket_id}", response_model=sp.Ticket)
def ticket(ticket_id: str, request: Request):
    """One ticket with its summary and redacted transcript."""
    return get_ticket(_state(request).database, ticket_id).to_dict()


@router.post("/tickets/{ticket_id}/reply", response_model=sp.SupportMessage)
def agent_reply(ticket_id: str, body: sp.AgentReplyRequest, request: Request):
    """A person's answer: added to the customer's session (their widget shows it) and to the transcript."""
    return _assistant(request).agent_reply(ticket_id, body.text, agent=body.agent, close=body.close).to_dict()


@router.post("/tickets/{ticket_id}/close", response_model=sp.Ticket)
def close_ticket(ticket_id: str, request: Request):
    """Close a ticket; the session goes back to the assistant."""
    return _assistant(request).close_ticket(ticket_id).to_dict()
