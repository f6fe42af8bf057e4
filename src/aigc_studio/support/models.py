"""The knowledge-base tables, on the store's declarative ``Base``; revision ``0002_support_kb`` creates them.

* ``kb_sources``: one row per ingested file (by name), with the sha256 of the bytes last ingested.
* ``kb_entries``: the current entries: id (stable, see :mod:`aigc_studio.support.ingest`), text, content
  hash and version number. Text here is already redacted: personal data never reaches these tables.
* ``kb_entry_versions``: every version of every entry, also of removed ones (``change`` says ``added``,
  ``updated`` or ``removed``), so an answer given last month can be traced to the text it came from.

The assistant's tables (revision ``0003_support_assistant``):

* ``support_customers``: a customer's profile: name, plan, preferred tone and orders (JSON list).
* ``support_sessions``: one conversation with one customer: its status (``active``, ``clarifying``,
  ``handed_off``, ``closed``) and, while clarifying, the intents offered.
* ``support_messages``: every turn of a session (customer, assistant, agent), redacted: personal data a
  customer types is replaced by placeholders before the row is written.
* ``support_tickets``: the agent queue and the customer's ticket history (``open``, ``answered``,
  ``closed``), with a redacted transcript and a short summary.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from aigc_studio.store.models import Base, UTCDateTime


class KbSource(Base):
    __tablename__ = "kb_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(400), unique=True)  # the file name entries are filed under
    kind: Mapped[str] = mapped_column(String(16))  # file suffix without the dot: csv, jsonl, md, html, txt, pdf
    file_sha256: Mapped[str] = mapped_column(String(64))
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime())


class KbEntry(Base):
    __tablename__ = "kb_entries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("kb_sources.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "faq" or "chunk"
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    intent: Mapped[str | None] = mapped_column(String(100), index=True)
    tags: Mapped[Any] = mapped_column(JSON, nullable=True)
    position: Mapped[int] = mapped_column(Integer)  # order within its file
    content_hash: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class KbEntryVersion(Base):
    __tablename__ = "kb_entry_versions"
    __table_args__ = (UniqueConstraint("entry_id", "version", name="uq_kb_entry_versions_entry_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Not a foreign key: the history outlives the entry.
    entry_id: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[int] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(String(16))  # added | updated | removed
    source_name: Mapped[str] = mapped_column(String(400))
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    intent: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[Any] = mapped_column(JSON, nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SupportCustomer(Base):
    __tablename__ = "support_customers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(100))
    tone: Mapped[str | None] = mapped_column(String(16), nullable=True)  # friendly | formal; None: the settings'
    language: Mapped[str] = mapped_column(String(8))
    orders: Mapped[Any] = mapped_column(JSON)  # [{"id", "item", "status", "date"}], newest first
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SupportSession(Base):
    __tablename__ = "support_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("support_customers.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # active | clarifying | handed_off | closed
    pending: Mapped[Any] = mapped_column(JSON, nullable=True)  # while clarifying: {"text", "options": [intent, ...]}
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SupportMessage(Base):
    __tablename__ = "support_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("support_sessions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # customer | assistant | agent
    text: Mapped[str] = mapped_column(Text)  # redacted
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)  # assistant: greet | answer | clarify | handoff
    intent: Mapped[str | None] = mapped_column(String(100), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    sources: Mapped[Any] = mapped_column(JSON, nullable=True)  # [{"id", "title"}]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SupportTicket(Base):
    __tablename__ = "support_tickets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # T-1001
    customer_id: Mapped[str] = mapped_column(ForeignKey("support_customers.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # open | answered | closed
    category: Mapped[str] = mapped_column(String(32))  # handoff, complaint, question...
    subject: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    transcript: Mapped[Any] = mapped_column(JSON)  # [{"role", "text", "at"}], redacted
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
