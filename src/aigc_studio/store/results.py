"""Generated ``/v1/content`` results, kept by id in the database.

The API answers a content request with an id; ``GET /v1/content/{id}`` must find it again later, from another
worker or after a restart, so results live in the database, not in the server's memory::

    results = ContentResults(database)
    results.put("3f2a...", body, api_key_id=None)
    results.get("3f2a...")        # the body, or None

Results older than ``retention_days`` are deleted as new ones arrive (0 keeps them all); the audit log keeps
every generation's outputs regardless, and the library keeps what a user saved.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete

from aigc_studio.store.db import Database
from aigc_studio.store.models import ContentResultRow, utc_now

# Deleting expired rows on every put would turn each write into a range scan; once per this many puts is enough.
_PRUNE_EVERY = 100


class ContentResults:
    """Content results by id, in the database (thread-safe: each call is one transaction).

    Args:
        database: the opened store.
        retention_days: delete results older than this (0 keeps every result).
    """

    def __init__(self, database: Database, retention_days: int = 30) -> None:
        self.database = database
        self.retention_days = retention_days
        self._puts = 0

    def put(self, content_id: str, body: dict[str, Any], api_key_id: int | None = None) -> None:
        """Keep ``body`` (JSON-ready) under ``content_id``; a second put of the same id replaces it."""
        self._puts += 1
        with self.database.session(write=True) as session:
            session.merge(ContentResultRow(id=content_id, created_at=utc_now(), api_key_id=api_key_id, body=body))
            if self.retention_days and self._puts % _PRUNE_EVERY == 1:
                cutoff = utc_now() - timedelta(days=self.retention_days)
                session.execute(delete(ContentResultRow).where(ContentResultRow.created_at < cutoff))

    def get(self, content_id: str) -> dict[str, Any] | None:
        """The body kept under ``content_id``, or None."""
        with self.database.session() as session:
            row = session.get(ContentResultRow, content_id)
            return None if row is None else row.body
