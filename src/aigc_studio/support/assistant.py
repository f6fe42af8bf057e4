"""The customer-service assistant: a reply to each customer message, grounded on the knowledge base.

::

    assistant = Assistant.from_settings(load_settings(), Database.from_settings(settings))
    reply = assistant.reply("s-1", "C1001", "my new card still hasn't arrived")
    reply.text, reply.sources, reply.intent, reply.confidence, reply.action, reply.handoff
    assistant.tickets(status="open")                      # the agent queue
    assistant.agent_reply("T-1002", "I have re-sent your card today.", agent="Sam")
    assistant.messages("s-1", after=0)                    # what the widget polls

Each message goes through the same steps:

1. **Privacy first.** Personal data in the message (:mod:`aigc_studio.safety.pii`) is replaced by numbered
   placeholders before anything else sees it: routing, retrieval, the reply model, the database and the log
   only ever get the redacted text. Then moderation (:meth:`Governance.check_prompt`) may refuse it.
2. **What is it about?** A greeting is answered as one; a request for a person ("agent", "human", "人工")
   hands off at once. Otherwise the intent router classifies the message and the hybrid index retrieves
   passages. The router's calibrated confidence decides: when the two best intents are closer than
   ``clarify_margin`` (and together reach ``handoff_threshold``) the assistant asks which one is meant, and
   the next message settles it (a number, or words that favour one of the two); otherwise below
   ``handoff_threshold`` a person takes over.
3. **The reply** is grounded on the knowledge-base entry of the intent (else the best retrieved entry),
   which is returned as its source. Without a reply model it is composed from that entry and templates; with
   one (``[support] reply_model``, any backend: transformers, OpenAI-compatible) the model writes it from the
   same passages through a prompt. Either way the customer's profile fills it in (name, plan, a matching
   order, an open ticket) and the tone follows the customer's preference or the settings (friendly, formal),
   turning apologetic when the history holds a recent complaint, which the reply then names.
4. **Governance.** Every reply passes :meth:`Governance.check_output` (moderation, and personal data that
   neither the customer's profile nor the sources contained is redacted) and is written to the audit log.
5. **Handoff** creates a ticket in the agent queue with the redacted transcript and a short summary; the
   session is then ``handed_off`` and further messages go to the ticket until an agent closes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import func, select

from aigc_studio.backends.base import Backend, BackendInfo
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_json
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.safety import pii
from aigc_studio.settings import Settings, SupportSettings
from aigc_studio.store.db import Database
from aigc_studio.store.models import utc_now
from aigc_studio.support.customers import TICKET_STATUSES, CustomerProfile, get_profile
from aigc_studio.support.intents import IntentPrediction, IntentRouter, IntentTrainConfig, train_intent_router
from aigc_studio.support.kb import KbEntryInfo, KnowledgeBase
from aigc_studio.support.models import SupportCustomer, SupportMessage, SupportSession, SupportTicket

logger = logging.getLogger("aigc_studio.support")

Action = Literal["greet", "answer", "clarify", "handoff"]
Tone = Literal["friendly", "formal"]
TONES: tuple[str, ...] = ("friendly", "formal")
KB_ROUTER_FINGERPRINT = "kb_fingerprint.json"
TEMPLATE_BACKEND = BackendInfo(name="support-templates", backend="templates", prompt_format="text", context_length=0)
# What the reply model samples with: low temperature, since the reply must stay with the passages.
REPLY_PARAMS = SamplingParams(temperature=0.3, top_p=0.9, max_tokens=200, seed=0)
# Passages given to a reply model, and turns of the conversation before the message.
PASSAGES = 3
HISTORY_TURNS = 6
_SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_GREETING = re.compile(
    r"^\s*(hi|hello|hey|hiya|good (morning|afternoon|evening)|你好|您好|嗨|早上好|下午好|晚上好)( there)?[\s!.,。！，~]*$", re.I
)
_PERSON = re.compile(
    r"\b(agent|human|person|representative|operator|somebody real|someone real|real person|staff member)s?\b|人工|真人|转接|客服人员",
    re.I,
)
_CHOICE = re.compile(r"^\s*(?:option\s*)?(?P<n>[12])\b|^\s*(?:the\s+)?(?P<word>first|second)\b|^\s*第(?P<zh>[一二])个?", re.I)
_CJK = re.compile(r"[\u3400-\u9fff]")


# ----------------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Source:
    """A knowledge-base entry a reply used."""

    id: str
    title: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title}


@dataclass
class Reply:
    """The assistant's answer to one message.

    Attributes:
        action: ``greet``, ``answer``, ``clarify`` (a question back) or ``handoff`` (a person takes over).
        intent, confidence: the router's verdict on the message (None for greetings and requests for a person).
        alternatives: the runner-up intents with their confidence.
        sources: the knowledge-base entries the reply is grounded on.
        ticket_id: the agent-queue ticket when ``handoff`` is true.
        flags: what output governance found (moderation categories, redacted personal data).
        message_id: the reply's row in the session, for polling (``messages(after=...)``).
    """

    session_id: str
    customer_id: str
    text: str
    action: Action
    intent: str | None = None
    confidence: float | None = None
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    handoff: bool = False
    ticket_id: str | None = None
    tone: str = "friendly"
    flags: list[dict[str, Any]] = field(default_factory=list)
    message_id: int | None = None
    audit_id: int | None = None
    latency_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id, "customer_id": self.customer_id, "reply": self.text, "action": self.action,
            "intent": self.intent, "confidence": None if self.confidence is None else round(self.confidence, 4),
            "alternatives": [{"intent": i, "confidence": round(p, 4)} for i, p in self.alternatives],
            "sources": [s.to_dict() for s in self.sources], "handoff": self.handoff, "ticket_id": self.ticket_id,
            "tone": self.tone, "flags": self.flags, "message_id": self.message_id, "audit_id": self.audit_id,
        }


@dataclass(frozen=True)
class MessageInfo:
    """One stored turn of a session (redacted text)."""

    id: int
    session_id: str
    role: str
    text: str
    action: str | None
    intent: str | None
    confidence: float | None
    sources: list[dict[str, str]]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "session_id": self.session_id, "role": self.role, "text": self.text,
                "action": self.action, "intent": self.intent, "confidence": self.confidence,
                "sources": self.sources, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class TicketInfo:
    """A ticket of the agent queue or of a customer's history."""

    id: str
    customer_id: str
    customer_name: str
    session_id: str | None
    status: str
    category: str
    subject: str
    summary: str
    transcript: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "customer_id": self.customer_id, "customer_name": self.customer_name,
                "session_id": self.session_id, "status": self.status, "category": self.category,
                "subject": self.subject, "summary": self.summary, "transcript": self.transcript,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat()}


class TicketNotFoundError(AigcError):
    """No ticket has this id (the server answers 404)."""

    def __init__(self, ticket_id: str) -> None:
        super().__init__(f"no ticket {ticket_id!r}; list the queue with GET /v1/support/tickets",
                         param="ticket_id", code="ticket_not_found", status=404)


class SessionNotFoundError(AigcError):
    """No session has this id (the server answers 404)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no support session {session_id!r}; start one by sending a message",
                         param="session_id", code="session_not_found", status=404)


# ----------------------------------------------------------------------------------------------------------
# the router trained on the knowledge base


def kb_router_dir(index_dir: str | Path) -> Path:
    """Where the router trained on the knowledge base lives: ``kb-router/`` beside the search index folder."""
    return Path(index_dir).parent / "kb-router"


def kb_training_examples(entries: Sequence[KbEntryInfo]) -> tuple[list[str], list[str]]:
    """Labelled messages from the FAQ entries that name an intent: each question, and each sentence of its
    answer (they carry the intent's words: "PIN", "top-up", "exchange rate")."""
    texts, labels = [], []
    for entry in entries:
        if not entry.intent:
            continue
        pieces = [entry.title] if entry.title else []
        pieces += [s for s in re.split(r"(?<=[.!?。！？])\s+", entry.text) if len(s.split()) >= 3 or _CJK.search(s)]
        for piece in pieces:
            texts.append(piece.strip())
            labels.append(entry.intent)
    return texts, labels


def ensure_kb_router(kb: KnowledgeBase, directory: str | Path, *, embedder: str = "minilm") -> IntentRouter:
    """The router trained on the knowledge base's FAQ entries, trained again when those entries changed.

    Training takes seconds (a few hundred short texts). The folder holds the router and the fingerprint of
    the entries it learnt from (``kb_fingerprint.json``: their ids, intents and content hashes).

    Raises:
        AigcError: fewer than two intents in the knowledge base (give FAQ rows an ``intent`` or set
            ``[support] router_dir``).
    """
    directory = Path(directory)
    entries = [entry for entry in kb.list_entries() if entry.intent]
    digest = hashlib.sha256(
        json.dumps(sorted((e.id, e.intent, e.content_hash) for e in entries)).encode("utf-8")
    ).hexdigest()
    marker = directory / KB_ROUTER_FINGERPRINT
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("sha256") == digest:
        return IntentRouter.load(directory)
    texts, labels = kb_training_examples(entries)
    if len(set(labels)) < 2:
        raise AigcError(
            "the assistant needs an intent router: the knowledge base has fewer than two intents; add FAQ rows with an "
            "'intent' column (aigc support kb add faq.csv) or set [support] router_dir to a trained router",
            param="router_dir",
        )
    # Few examples per intent: keep every n-gram (min_df 1) and calibrate on one in five.
    config = IntentTrainConfig(embedder=embedder, min_df=1, calibration_fraction=0.2)
    router, report = train_intent_router(texts, labels, config, seed=0)
    router.save(directory, readme=(
        f"# Knowledge-base router\n\nTrained by `aigc support` on {report.train_size} questions and answer sentences "
        f"of {report.labels} intents in the knowledge base ({report.train_seconds:.1f} s). Trained again whenever "
        "those entries change.\n"
    ))
    atomic_write_json(marker, {"sha256": digest, "entries": len(entries), "examples": len(texts)})
    logger.info("trained the knowledge-base router: %d intents, %d examples, %.1f s",
                report.labels, report.train_size, report.train_seconds)
    return router


# ----------------------------------------------------------------------------------------------------------
# wording


_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "greet.friendly": "Hi {first}! I'm the Harbourline assistant. What can I help you with today?",
        "greet.formal": "Good day, {name}. This is the Harbourline assistant. How may I help you?",
        "open.friendly": "Hi {first}, here's what I found for your {plan} account:",
        "open.formal": "Dear {name}, thank you for your message. For your {plan} account:",
        "sorry": "I'm sorry again about the trouble with \"{subject}\" (ticket {ticket}).",
        "order": "Your order {order} ({item}) is {status} since {date}.",
        "open_ticket": "Your ticket {ticket} (\"{subject}\") is still open with our team.",
        "close.friendly": "Anything else I can help with?",
        "close.formal": "Please let me know if there is anything else I can do for you.",
        "clarify.friendly": "Just to be sure I help with the right thing, {first}: do you mean 1) {one} or 2) {two}? "
                            "Reply 1 or 2, or tell me a bit more.",
        "clarify.formal": "To make sure I answer correctly, {name}: do you mean 1) {one} or 2) {two}? "
                          "Please reply 1 or 2, or add a detail.",
        "handoff.person": "Of course, {first}. I'm passing you to a colleague now (ticket {ticket}); they can see our "
                          "conversation and will reply here.",
        "handoff.unsure": "I'm not sure I can answer that well, {first}, so I've passed it to a colleague (ticket "
                          "{ticket}); they can see our conversation and will reply here.",
        "waiting": "A colleague has your conversation (ticket {ticket}) and will reply here; I've added your message.",
    },
    "zh": {
        "greet.friendly": "{first}您好！我是 Harbourline 智能客服，请问有什么可以帮您？",
        "greet.formal": "{name}您好，这里是 Harbourline 客服，请问有什么可以帮您？",
        "open.friendly": "{first}您好，关于您的 {plan} 账户：",
        "open.formal": "{name}您好，感谢您的留言。关于您的 {plan} 账户：",
        "sorry": "对于“{subject}”（工单 {ticket}）给您带来的不便，我们再次表示歉意。",
        "order": "您的订单 {order}（{item}）自 {date} 起状态为：{status}。",
        "open_ticket": "您的工单 {ticket}（“{subject}”）仍在处理中。",
        "close.friendly": "还有什么可以帮您的吗？",
        "close.formal": "如有其他需要，请随时告诉我们。",
        "clarify.friendly": "想确认一下：您是指 1) {one}，还是 2) {two}？请回复 1 或 2，或者多说一点。",
        "clarify.formal": "为准确答复，请问您是指 1) {one}，还是 2) {two}？请回复 1 或 2。",
        "handoff.person": "好的，正在为您转接人工客服（工单 {ticket}），同事可以看到我们的对话，会在这里回复您。",
        "handoff.unsure": "这个问题我可能答不好，已转给同事处理（工单 {ticket}），他们会在这里回复您。",
        "waiting": "同事已接手您的对话（工单 {ticket}），会在这里回复；您的消息已转达。",
    },
}


def message_language(text: str) -> str:
    """``"zh"`` when the message has Chinese characters, else ``"en"`` (the template languages)."""
    return "zh" if _CJK.search(text) else "en"


def _say(language: str, key: str, **values: Any) -> str:
    return _WORDS[language][key].format(**values)


# ----------------------------------------------------------------------------------------------------------
# the assistant


@dataclass
class _Turn:
    """What one message decided, before the reply is worded."""

    action: Action
    intent: str | None = None
    confidence: float | None = None
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    entries: list[KbEntryInfo] = field(default_factory=list)
    options: list[str] = field(default_factory=list)  # clarify: the intents offered
    reason: str = ""  # handoff: why


class Assistant:
    """Replies to customers from the knowledge base, their profile and history; hands off to people.

    Args:
        db: the database (customers, sessions, messages, tickets, the knowledge base, the audit log).
        kb: the knowledge base.
        router: the intent router.
        governance: moderation, PII and the audit log (:class:`~aigc_studio.content.governance.Governance`).
        settings: the ``[support]`` settings (thresholds, tone, message size).
        backend: a model that writes replies from the retrieved passages; None composes them from templates.
        router_follows_kb: the router is the one trained on the knowledge base's FAQ (in ``settings.index_dir``):
            :meth:`refresh` trains it again when those entries change.
    """

    def __init__(self, db: Database, kb: KnowledgeBase, router: IntentRouter, governance: Any,
                 settings: SupportSettings | None = None, backend: Backend | None = None, *,
                 router_follows_kb: bool = False) -> None:
        self.db = db
        self.kb = kb
        self.router = router
        self.governance = governance
        self.settings = settings or SupportSettings()
        self.backend = backend
        self.router_follows_kb = router_follows_kb
        self._kb_revision = kb.revision()
        # The intents of the knowledge-base router while the knowledge base has two or more (what refresh reports).
        self._kb_intents = len(router.labels) if router_follows_kb else None
        # Routing and search share lazily built state (the BM25 matrix, the embedder), and knowledge-base updates
        # replace it: one at a time (the API's knowledge-base routes take this lock too).
        self.lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings, db: Database, *, governance: Any = None,
                      backend: Backend | None = None) -> Assistant:
        """The assistant of an installation: its knowledge base, router (``[support] router_dir``, else the one
        trained on the knowledge base), governance and reply model (``[support] reply_model``)."""
        from aigc_studio.content.governance import Governance

        support = settings.support
        kb = KnowledgeBase(db, index_dir=support.index_dir, embedder=support.embedder)
        if support.router_dir is not None:
            from aigc_studio.models.registry import resolve_model

            router = IntentRouter.load(resolve_model(support.router_dir))
        else:
            router = ensure_kb_router(kb, kb_router_dir(support.index_dir), embedder=support.embedder)
        if backend is None and support.reply_model:
            from aigc_studio.backends.registry import load_backend

            backend = load_backend(support.reply_model, settings)
        return cls(db, kb, router, governance or Governance(settings, db), support, backend,
                   router_follows_kb=support.router_dir is None)

    def refresh(self) -> int | None:
        """Follow the knowledge base as the database holds it now, whoever changed it (the API, the CLI beside a
        running server, another worker): a router trained on the knowledge base is trained again when its FAQ
        entries changed. The search index follows by itself
        (:attr:`~aigc_studio.support.kb.KnowledgeBase.index`). One query when nothing changed.

        Returns:
            The router's number of intents when it follows the knowledge base (None otherwise, or while the
            knowledge base has fewer than two intents: the router trained before stays).
        """
        with self.lock:
            revision = self.kb.revision()
            if revision != self._kb_revision and self.router_follows_kb:
                intents = {entry.intent for entry in self.kb.list_entries() if entry.intent}
                self._kb_intents = None
                if len(intents) >= 2:
                    self.router = ensure_kb_router(self.kb, kb_router_dir(self.settings.index_dir),
                                                   embedder=self.settings.embedder)
                    self._kb_intents = len(self.router.labels)
            self._kb_revision = revision
            return self._kb_intents

    # -------------------------------------------------------------------------------------------- replies

    def reply(self, session_id: str | None, customer_id: str, message: str, *, tone: str | None = None,
              api_key_id: int | None = None) -> Reply:
        """Answer one customer message (see the module docstring for the steps).

        Args:
            session_id: the conversation; None starts a new one (its id is in the reply).
            customer_id: whose message it is.
            message: what they wrote.
            tone: ``friendly`` or ``formal`` for this reply; None: the customer's preference, else the settings'.

        Raises:
            AigcError: an empty (400) or oversized (413) message, an unknown customer (404), a session of another
                customer (403), a bad tone, or a message moderation blocks (400 ``content_policy_violation``).
        """
        started = time.perf_counter()
        message = self._check_message(message)
        self.refresh()
        if tone is not None and tone not in TONES:
            raise AigcError(f"unknown tone {tone!r}; use friendly or formal", param="tone")
        profile = get_profile(self.db, customer_id)
        session_id = self._open_session(session_id, customer_id)
        entities = pii.detect(message)
        redacted = pii.redact(message, "placeholder", entities=entities) if entities else message
        self.governance.check_prompt(redacted)
        language = message_language(redacted)
        tone = tone or profile.tone or self.settings.tone
        self._add_message(session_id, "customer", redacted)

        session = self._session(session_id)
        if session.status == "handed_off":
            ticket = self._reopen_ticket(session_id)
            turn = _Turn("handoff", reason="waiting for an agent")
            text = _say(language, "waiting", ticket=ticket)
            return self._finish(profile, session_id, turn, text, tone, started, redacted, api_key_id, ticket_id=ticket)

        turn = self._decide(redacted, session)
        if turn.action == "answer" and not turn.entries:  # an intent the knowledge base has no entry for
            turn = _Turn("handoff", intent=turn.intent, confidence=turn.confidence, alternatives=turn.alternatives,
                         reason="nothing in the knowledge base answers it")
        ticket_id = None
        if turn.action == "greet":
            text = _say(language, f"greet.{tone}", first=profile.first_name, name=profile.name)
        elif turn.action == "clarify":
            one, two = (self._intent_title(intent) for intent in turn.options)
            text = _say(language, f"clarify.{tone}", first=profile.first_name, name=profile.name, one=one, two=two)
        elif turn.action == "handoff":
            ticket_id = self._open_ticket(profile, session_id, turn)
            key = "handoff.person" if turn.reason == "asked for a person" else "handoff.unsure"
            text = _say(language, key, first=profile.first_name, ticket=ticket_id)
        else:
            text = self._compose(profile, session_id, turn, tone, language, redacted)
        return self._finish(profile, session_id, turn, text, tone, started, redacted, api_key_id, ticket_id=ticket_id)

    def stream_reply(self, session_id: str | None, customer_id: str, message: str, *, tone: str | None = None,
                     api_key_id: int | None = None) -> tuple[Reply, Iterator[str]]:
        """The reply and its text in pieces (words), for streaming.

        The whole reply is made and checked first: a check on part of a text could let personal data or a
        blocked phrase through before the rest arrives, so nothing unchecked is ever sent.
        """
        result = self.reply(session_id, customer_id, message, tone=tone, api_key_id=api_key_id)
        return result, iter(re.findall(r"\S+\s*|\s+", result.text))

    def _check_message(self, message: str) -> str:
        if not isinstance(message, str) or not message.strip():
            raise AigcError("the message is empty; send the customer's text", param="message", code="empty_message")
        limit = self.settings.max_message_chars
        if len(message) > limit:
            raise AigcError(f"the message has {len(message):,} characters, more than the {limit:,} allowed; shorten it "
                            "(or raise [support] max_message_chars)", param="message", code="message_too_long", status=413)
        return message.strip()

    def _decide(self, text: str, session: SupportSession) -> _Turn:
        if _PERSON.search(text):
            return _Turn("handoff", reason="asked for a person")
        if _GREETING.match(text):
            return _Turn("greet")
        pending = session.pending or {}
        if session.status == "clarifying" and pending.get("options"):
            return self._settle(text, pending)
        prediction, hits = self._route(text)
        turn = self._judge(prediction)
        if turn.action == "answer":
            turn.entries = self._entries_for(prediction.intent, hits)
        return turn

    def _route(self, text: str) -> tuple[IntentPrediction, list[KbEntryInfo]]:
        with self.lock:
            # The message is embedded once when the router and the index use the same model (a third of a reply).
            vectors = self.router.features.embed([text])
            names = [embedder.name for embedder in self.router.features.embedders]
            shared = vectors[names.index(self.kb.embedder.name)][0] if self.kb.embedder.name in names else None
            probs = self.router.predict_proba([text], vectors)[0]
            hits = [hit.entry for hit in self.kb.search(text, k=PASSAGES, query_vector=shared)]
        order = np.argsort(-probs)[:3]
        labels = self.router.labels
        prediction = IntentPrediction(labels[order[0]], float(probs[order[0]]),
                                      tuple((labels[i], float(probs[i])) for i in order[1:]))
        return prediction, hits

    def _judge(self, prediction: IntentPrediction) -> _Turn:
        alternatives = list(prediction.alternatives)
        base = {"intent": prediction.intent, "confidence": prediction.confidence, "alternatives": alternatives}
        runner_up = alternatives[0][1] if alternatives else 0.0
        # Two close intents that together are likely enough: one question settles it. Otherwise an unsure router
        # hands off rather than guess.
        if alternatives and prediction.confidence - runner_up < self.settings.clarify_margin and \
                prediction.confidence + runner_up >= self.settings.handoff_threshold:
            return _Turn("clarify", options=[prediction.intent, alternatives[0][0]], **base)
        if prediction.confidence < self.settings.handoff_threshold:
            return _Turn("handoff", reason=f"low confidence ({prediction.confidence:.2f})", **base)
        return _Turn("answer", **base)

    def _settle(self, text: str, pending: dict[str, Any]) -> _Turn:
        """The customer's answer to a clarifying question: a choice, a new topic, or words favouring one option."""
        options: list[str] = pending["options"]
        choice = _CHOICE.match(text)
        if choice:
            number = choice.group("n") or {"first": "1", "second": "2", "一": "1", "二": "2"}[
                (choice.group("word") or choice.group("zh")).lower()]
            intent = options[int(number) - 1]
            return _Turn("answer", intent=intent, confidence=1.0, entries=self._entries_for(intent, []))
        prediction, hits = self._route(text)
        alone = self._judge(prediction)
        if prediction.intent in options or alone.action == "answer":
            alone.action, alone.options = "answer", []
            alone.entries = self._entries_for(prediction.intent, hits)
            return alone
        # Neither clear on its own: read both messages together and keep the better of the two options.
        combined = f"{pending.get('text', '')} {text}"
        with self.lock:
            probs = self.router.predict_proba([combined])[0]
            hits = [hit.entry for hit in self.kb.search(combined, k=PASSAGES)]
        scores = {intent: float(probs[self.router.labels.index(intent)]) for intent in options if intent in self.router.labels}
        intent = max(scores, key=scores.get)
        return _Turn("answer", intent=intent, confidence=scores[intent],
                     alternatives=[(i, p) for i, p in scores.items() if i != intent],
                     entries=self._entries_for(intent, hits))

    def _entries_for(self, intent: str | None, hits: list[KbEntryInfo]) -> list[KbEntryInfo]:
        """The entry written for the intent first, then retrieved ones (the reply model may use all of them)."""
        own = [entry for entry in self.kb.list_entries() if intent and entry.intent == intent][:1]
        return (own + [hit for hit in hits if all(hit.id != entry.id for entry in own)])[:PASSAGES]

    def _intent_title(self, intent: str) -> str:
        entry = next((e for e in self.kb.list_entries() if e.intent == intent), None)
        return f"\"{entry.title}\"" if entry is not None and entry.title else intent.replace("_", " ")

    # ------------------------------------------------------------------------------------------- wording

    def _compose(self, profile: CustomerProfile, session_id: str, turn: _Turn, tone: str, language: str,
                 message: str) -> str:
        # The recent complaint is apologised for once a session, in its first answer.
        apologise = not any(m.action == "answer" for m in self.messages(session_id))
        if self.backend is not None:
            written = self._write_with_model(profile, session_id, turn, tone, message, apologise)
            if written:
                return written
            logger.warning("support reply model %s returned an empty reply; composing from templates",
                           self.backend.info.name)
        return self._template_reply(profile, turn, tone, language, apologise)

    def _template_reply(self, profile: CustomerProfile, turn: _Turn, tone: str, language: str, apologise: bool) -> str:
        parts = []
        complaint = profile.recent_complaint(self.settings.complaint_days) if apologise else None
        if complaint is not None:
            parts.append(_say(language, "sorry", subject=complaint.subject, ticket=complaint.id))
        parts += [_say(language, f"open.{tone}", first=profile.first_name, name=profile.name, plan=profile.plan),
                  turn.entries[0].text]
        # An order whose item shares a word with the topic (card_arrival ~ "Metal debit card").
        topic = set((turn.intent or "").split("_")) | set(turn.entries[0].tags)
        order = next((o for o in profile.orders if topic & set(re.findall(r"[a-z]+", o["item"].lower()))), None)
        if order is not None:
            parts.append(_say(language, "order", order=order["id"], item=order["item"], status=order["status"],
                              date=order["date"]))
        open_ticket = next((t for t in profile.tickets if t.status != "closed"), None)
        if open_ticket is not None:
            parts.append(_say(language, "open_ticket", ticket=open_ticket.id, subject=open_ticket.subject))
        parts.append(_say(language, f"close.{tone}"))
        return "\n\n".join(parts)

    def _reply_prompt(self, profile: CustomerProfile, session_id: str, turn: _Turn, tone: str, message: str,
                      apologise: bool) -> str:
        complaint = profile.recent_complaint(self.settings.complaint_days) if apologise else None
        manner = "warm and friendly, first name" if tone == "friendly" else "formal and courteous, full name"
        if complaint is not None:
            manner += f"; open with a short apology for the recent trouble with \"{complaint.subject}\" (ticket {complaint.id})"
        orders = "; ".join(f"{o['id']} {o['item']} ({o['status']} since {o['date']})" for o in profile.orders) or "none"
        tickets = "; ".join(f"{t.id} {t.subject} ({t.status})" for t in profile.tickets[:3]) or "none"
        passages = "\n".join(f"[{n}] {e.title}\n{e.text}" for n, e in enumerate(turn.entries, start=1))
        history = self.messages(session_id)[-HISTORY_TURNS - 1:-1]
        transcript = "\n".join(f"{m.role.capitalize()}: {m.text}" for m in history)
        return (
            "You are the customer-service assistant of Harbourline bank. Answer the customer's last message using "
            "only the passages below; if they do not answer it, say a colleague will follow up. Do not invent fees, "
            f"dates or numbers. Tone: {manner}.\n\n"
            f"Customer: {profile.name}, {profile.plan} plan. Orders: {orders}. Previous tickets: {tickets}.\n\n"
            f"Passages:\n{passages}\n\n"
            + (f"Conversation so far:\n{transcript}\n\n" if transcript else "")
            + f"Customer: {message}\nAssistant:"
        )

    def _write_with_model(self, profile: CustomerProfile, session_id: str, turn: _Turn, tone: str, message: str,
                          apologise: bool) -> str:
        prompt = self._reply_prompt(profile, session_id, turn, tone, message, apologise)
        params = self.governance.sampling_params(REPLY_PARAMS, self.backend)
        [result] = self.backend.generate([prompt], params)
        return result.candidates[0].text.strip() if result.candidates else ""

    # ------------------------------------------------------------------------------------ governance, storage

    def _finish(self, profile: CustomerProfile, session_id: str, turn: _Turn, text: str, tone: str, started: float,
                message: str, api_key_id: int | None, *, ticket_id: str | None = None) -> Reply:
        # What the reply may contain: the customer's own details and the sources' words.
        given = "\n".join([_profile_text(profile), *(e.text for e in turn.entries)])
        check = self.governance.check_output(text, given)
        sources = [Source(e.id, e.title) for e in turn.entries[: 1 if self.backend is None else PASSAGES]]
        if turn.action != "answer":
            sources = []
        reply = Reply(
            session_id=session_id, customer_id=profile.id, text=check.text, action=turn.action, intent=turn.intent,
            confidence=turn.confidence, alternatives=turn.alternatives, sources=sources,
            handoff=turn.action == "handoff", ticket_id=ticket_id, tone=tone, flags=check.flags,
        )
        reply.latency_ms = (time.perf_counter() - started) * 1000
        info = self.backend.info if self.backend is not None and turn.action == "answer" else TEMPLATE_BACKEND
        params = REPLY_PARAMS if self.backend is not None and turn.action == "answer" else SamplingParams()
        provenance = self.governance.record(
            kind="support", backend_info=info, params=params, prompt=message, outputs=[reply.text],
            scores={"action": reply.action, "intent": reply.intent, "confidence": reply.confidence,
                    "sources": [s.id for s in reply.sources], "session_id": session_id, "ticket_id": ticket_id},
            api_key_id=api_key_id, latency_ms=reply.latency_ms, task="support-reply",
        )
        reply.audit_id = provenance.get("record_id")
        row = self._add_message(session_id, "assistant", reply.text, action=reply.action, intent=reply.intent,
                                confidence=reply.confidence, sources=[s.to_dict() for s in reply.sources])
        reply.message_id = row.id
        self._update_session(session_id, turn, message)
        if ticket_id is not None:
            self._refresh_transcript(ticket_id, session_id)
        # Ids and numbers only: the message and the reply stay out of the log.
        logger.info("support reply session=%s customer=%s action=%s intent=%s confidence=%s sources=%d %.0f ms",
                    session_id, profile.id, reply.action, reply.intent,
                    None if reply.confidence is None else round(reply.confidence, 3), len(reply.sources), reply.latency_ms)
        return reply

    def _open_session(self, session_id: str | None, customer_id: str) -> str:
        if session_id is None or session_id == "":
            session_id = uuid.uuid4().hex
        elif not _SESSION_ID.match(session_id):
            raise AigcError("session_id must be 1-64 letters, digits, '_', '-', '.' or ':'", param="session_id")
        now = utc_now()
        with self.db.session(write=True) as session:
            row = session.get(SupportSession, session_id)
            if row is None:
                session.add(SupportSession(id=session_id, customer_id=customer_id, status="active", pending=None,
                                           created_at=now, updated_at=now))
            elif row.customer_id != customer_id:
                raise AigcError(f"session {session_id!r} belongs to another customer; start a new session",
                                param="session_id", code="session_conflict", status=403)
        return session_id

    def _session(self, session_id: str) -> SupportSession:
        with self.db.session() as session:
            row = session.get(SupportSession, session_id)
            if row is None:
                raise SessionNotFoundError(session_id)
            return row

    def _update_session(self, session_id: str, turn: _Turn, message: str) -> None:
        with self.db.session(write=True) as session:
            row = session.get(SupportSession, session_id)
            if turn.action == "clarify":
                row.status, row.pending = "clarifying", {"text": message, "options": turn.options}
            elif turn.action == "handoff":
                row.status, row.pending = "handed_off", None
            else:
                row.status, row.pending = "active", None
            row.updated_at = utc_now()

    def _add_message(self, session_id: str, role: str, text: str, **fields: Any) -> SupportMessage:
        with self.db.session(write=True) as session:
            row = SupportMessage(session_id=session_id, role=role, text=text, created_at=utc_now(), **fields)
            session.add(row)
            session.flush()
            return row

    # --------------------------------------------------------------------------------------------- tickets

    def _open_ticket(self, profile: CustomerProfile, session_id: str, turn: _Turn) -> str:
        history = self.messages(session_id)
        asked = [m.text for m in history if m.role == "customer"]
        topics = [m.intent for m in history if m.intent] + ([turn.intent] if turn.intent else [])
        topic_titles = ", ".join(dict.fromkeys(self._intent_title(t) for t in topics)) or "none recognised"
        excerpt = asked[-1] if asked else ""
        excerpt = excerpt if len(excerpt) <= 160 else excerpt[:159] + "…"
        summary = (f"{profile.name} ({profile.plan} plan): {turn.reason}. Topics: {topic_titles}. "
                   f"Last message: \"{excerpt}\". {len(asked)} customer message(s) in the session.")
        subject = next((a for a in reversed(asked) if len(a.split()) >= 3 and not _PERSON.search(a)), excerpt)
        subject = subject if len(subject) <= 80 else subject[:79] + "…"
        now = utc_now()
        with self.db.session(lock=True) as session:
            numbers = [int(m.group(1)) for (ticket_id,) in session.execute(select(SupportTicket.id))
                       if (m := re.fullmatch(r"T-(\d+)", ticket_id))]
            ticket_id = f"T-{max([1000, *numbers]) + 1:04d}"
            session.add(SupportTicket(
                id=ticket_id, customer_id=profile.id, session_id=session_id, status="open", category="handoff",
                subject=subject or "(no message)", summary=summary, transcript=[], created_at=now, updated_at=now,
            ))
        return ticket_id

    def _refresh_transcript(self, ticket_id: str, session_id: str) -> None:
        transcript = [{"role": m.role, "text": m.text, "at": m.created_at.isoformat()} for m in self.messages(session_id)]
        with self.db.session(write=True) as session:
            ticket = session.get(SupportTicket, ticket_id)
            ticket.transcript, ticket.updated_at = transcript, utc_now()

    def _reopen_ticket(self, session_id: str) -> str:
        """The session's newest ticket, open again: the customer wrote after the handoff."""
        with self.db.session(write=True) as session:
            ticket = session.scalar(select(SupportTicket).where(SupportTicket.session_id == session_id)
                                    .order_by(SupportTicket.created_at.desc()).limit(1))
            ticket.status, ticket.updated_at = "open", utc_now()
            return ticket.id

    def tickets(self, status: str | None = None, customer_id: str | None = None) -> list[TicketInfo]:
        """Tickets, newest first (see :func:`list_tickets`)."""
        return list_tickets(self.db, status=status, customer_id=customer_id)

    def ticket(self, ticket_id: str) -> TicketInfo:
        """One ticket with its transcript (see :func:`get_ticket`)."""
        return get_ticket(self.db, ticket_id)

    def agent_reply(self, ticket_id: str, text: str, *, agent: str | None = None, close: bool = False) -> MessageInfo:
        """A person's reply to a ticket: appended to the session (the widget shows it on its next poll) and to the
        transcript; the ticket becomes ``answered`` (``closed`` with ``close``, which returns the session to the
        assistant).

        Raises:
            AigcError: an empty text, a ticket with no session (history loaded from a file), or unknown (404).
        """
        if not isinstance(text, str) or not text.strip():
            raise AigcError("the reply is empty; write the answer to the customer", param="text")
        ticket = self.ticket(ticket_id)
        if ticket.session_id is None:
            raise AigcError(f"ticket {ticket_id} has no chat session to reply in (it came from the history file)",
                            param="ticket_id")
        profile = get_profile(self.db, ticket.customer_id)
        # An agent may write the customer's own details; other personal data is still kept out.
        check = self.governance.check_output(text.strip(), "\n".join([_profile_text(profile), ticket.summary]))
        row = self._add_message(ticket.session_id, "agent", check.text, action="agent")
        self._refresh_transcript(ticket_id, ticket.session_id)
        with self.db.session(write=True) as session:
            stored = session.get(SupportTicket, ticket_id)
            stored.status, stored.updated_at = ("closed" if close else "answered"), utc_now()
            if close:
                session.get(SupportSession, ticket.session_id).status = "active"
        self.governance.record(kind="support", backend_info=BackendInfo(
            name=f"agent:{agent or 'unnamed'}"[:64], backend="human", prompt_format="text", context_length=0),
            params=SamplingParams(), prompt=ticket.summary, outputs=[check.text],
            scores={"ticket_id": ticket_id, "session_id": ticket.session_id}, task="support-agent-reply")
        logger.info("support agent reply ticket=%s session=%s close=%s", ticket_id, ticket.session_id, close)
        return _message_info(row)

    def close_ticket(self, ticket_id: str) -> TicketInfo:
        """Close a ticket; its session goes back to the assistant."""
        ticket = self.ticket(ticket_id)
        with self.db.session(write=True) as session:
            stored = session.get(SupportTicket, ticket_id)
            stored.status, stored.updated_at = "closed", utc_now()
            if ticket.session_id is not None and (row := session.get(SupportSession, ticket.session_id)) is not None:
                row.status, row.pending = "active", None
        return self.ticket(ticket_id)

    def messages(self, session_id: str, after: int = 0) -> list[MessageInfo]:
        """The session's turns with an id above ``after``, oldest first (the widget polls with its last id)."""
        with self.db.session() as session:
            rows = session.scalars(select(SupportMessage).where(SupportMessage.session_id == session_id,
                                                                SupportMessage.id > after).order_by(SupportMessage.id))
            return [_message_info(row) for row in rows]

    def session_status(self, session_id: str) -> dict[str, Any]:
        """The session's customer and status, and how many turns it has.

        Raises:
            SessionNotFoundError: no such session (404).
        """
        row = self._session(session_id)
        with self.db.session() as session:
            count = session.scalar(select(func.count()).select_from(SupportMessage)
                                   .where(SupportMessage.session_id == session_id))
        return {"session_id": row.id, "customer_id": row.customer_id, "status": row.status, "messages": count}


def list_tickets(db: Database, status: str | None = None, customer_id: str | None = None) -> list[TicketInfo]:
    """Tickets, newest first; the agent queue is ``status="open"``.

    Raises:
        AigcError: an unknown status.
    """
    if status is not None and status not in TICKET_STATUSES:
        raise AigcError(f"unknown ticket status {status!r}; use one of: {', '.join(TICKET_STATUSES)}", param="status")
    query = (select(SupportTicket, SupportCustomer.name).join(SupportCustomer)
             .order_by(SupportTicket.created_at.desc(), SupportTicket.id.desc()))
    if status is not None:
        query = query.where(SupportTicket.status == status)
    if customer_id is not None:
        query = query.where(SupportTicket.customer_id == customer_id)
    with db.session() as session:
        return [_ticket_info(ticket, name) for ticket, name in session.execute(query)]


def get_ticket(db: Database, ticket_id: str) -> TicketInfo:
    """One ticket with its transcript.

    Raises:
        TicketNotFoundError: no such ticket (404).
    """
    with db.session() as session:
        row = session.execute(select(SupportTicket, SupportCustomer.name).join(SupportCustomer)
                              .where(SupportTicket.id == ticket_id)).first()
        if row is None:
            raise TicketNotFoundError(ticket_id)
        return _ticket_info(*row)


def _profile_text(profile: CustomerProfile) -> str:
    """The customer's name as every greeting writes it: personal data the business itself gives in a reply
    (output governance redacts only personal data that the text it is given does not contain)."""
    return "\n".join(
        _say(language, f"{part}.{tone}", first=profile.first_name, name=profile.name, plan=profile.plan)
        for language in _WORDS for tone in TONES for part in ("greet", "open")
    )


def _message_info(row: SupportMessage) -> MessageInfo:
    return MessageInfo(row.id, row.session_id, row.role, row.text, row.action, row.intent, row.confidence,
                       list(row.sources or []), row.created_at)


def _ticket_info(ticket: SupportTicket, customer_name: str) -> TicketInfo:
    return TicketInfo(ticket.id, ticket.customer_id, customer_name, ticket.session_id, ticket.status, ticket.category,
                      ticket.subject, ticket.summary, list(ticket.transcript or []), ticket.created_at, ticket.updated_at)
