"""The tables, as SQLAlchemy 2.0 declarative classes. Alembic revisions in ``migrations/versions/`` create them.

* ``api_keys``: one row per API key; only the sha256 of the secret is stored.
* ``audit_records``: the hash-chained log of every generation (see :mod:`aigc_studio.store.audit`).
* ``audit_output_hashes``: the content hash of every output of every record, so provenance finds any candidate
  a caller was given, not only the best one; derived from ``audit_records.outputs`` and rebuildable from it
  (an image's output is its generation record, indexed under the record's ``pixels_sha256``).
* ``content_items`` and ``content_tags``: the content library (see :mod:`aigc_studio.store.library`).
* ``content_results``: every ``/v1/content`` result by id, so ``GET /v1/content/{id}`` answers after a restart
  (see :mod:`aigc_studio.store.results`).

A change to these classes needs a new revision in ``migrations/versions/`` (copy the newest one).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database.

    PostgreSQL keeps the zone (``timestamptz``); SQLite has no datetime type and hands back naive values, so
    values are converted to UTC on the way in and marked UTC on the way out. The audit hash covers
    ``created_at``, so it must read back exactly as it was written.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(timezone.utc)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (what every ``created_at`` holds)."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)  # shown in lists; identifies, never authenticates
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the secret
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)  # None: the server's default


class AuditRecord(Base):
    __tablename__ = "audit_records"

    # Ids are given by AuditLog.append under the chain lock, not by a sequence: a sequence skips values when a
    # transaction rolls back, and verify reads a gap as a deleted record.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    kind: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    task: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[Any] = mapped_column(JSON, nullable=True)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    prompt: Mapped[str | None] = mapped_column(Text)
    outputs: Mapped[Any] = mapped_column(JSON, nullable=True)
    scores: Mapped[Any] = mapped_column(JSON, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    provenance: Mapped[Any] = mapped_column(JSON, nullable=True)
    content_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditOutputHash(Base):
    __tablename__ = "audit_output_hashes"

    audit_record_id: Mapped[int] = mapped_column(ForeignKey("audit_records.id", ondelete="CASCADE"), primary_key=True)
    output_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_sha256: Mapped[str] = mapped_column(String(64), index=True)


class ContentItem(Base):
    __tablename__ = "content_items"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    task: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    request: Mapped[Any] = mapped_column(JSON, nullable=True)
    scores: Mapped[Any] = mapped_column(JSON, nullable=True)
    language: Mapped[str | None] = mapped_column(String(16))
    audit_record_id: Mapped[int | None] = mapped_column(ForeignKey("audit_records.id"))
    tags: Mapped[list[ContentTag]] = relationship(
        back_populates="item", cascade="all, delete-orphan", order_by="ContentTag.position", lazy="selectin"
    )


class ContentTag(Base):
    __tablename__ = "content_tags"
    __table_args__ = (Index("ix_content_tags_tag", "tag"),)

    item_id: Mapped[str] = mapped_column(ForeignKey("content_items.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # the order the user gave
    item: Mapped[ContentItem] = relationship(back_populates="tags")


class ContentResultRow(Base):
    __tablename__ = "content_results"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the id the API returned
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    body: Mapped[Any] = mapped_column(JSON)  # the response body, as the API returned it
