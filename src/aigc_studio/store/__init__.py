"""Storage: the database (SQLite by default, PostgreSQL by URL), API keys, the audit log, the content library.

* :mod:`~aigc_studio.store.db`: :class:`Database` (engine, sessions, Alembic migrations run on open).
* :mod:`~aigc_studio.store.models`: the tables.
* :mod:`~aigc_studio.store.keys`: :func:`create_key`, :func:`verify_key`, :func:`list_keys`, :func:`revoke_key`.
* :mod:`~aigc_studio.store.audit`: :class:`AuditLog`, the hash-chained record of every generation.
* :mod:`~aigc_studio.store.library`: :class:`ContentLibrary`, saved, tagged and searchable content.

docs/storage.md describes URLs, migrations, keys, the audit log and exports.
"""

from aigc_studio.store.audit import (
    AuditEntry,
    AuditLog,
    AuditRecordInfo,
    AuditVerification,
    audit_content_result,
    verify_chain,
)
from aigc_studio.store.db import Database, DatabaseUnavailableError
from aigc_studio.store.keys import ApiKeyInfo, any_active_key, create_key, list_keys, revoke_key, verify_key
from aigc_studio.store.library import ContentItemInfo, ContentLibrary, ContentNotFoundError, NewContentItem

__all__ = [
    "ApiKeyInfo",
    "AuditEntry",
    "AuditLog",
    "AuditRecordInfo",
    "AuditVerification",
    "ContentItemInfo",
    "ContentLibrary",
    "ContentNotFoundError",
    "Database",
    "DatabaseUnavailableError",
    "NewContentItem",
    "any_active_key",
    "audit_content_result",
    "create_key",
    "list_keys",
    "revoke_key",
    "verify_chain",
    "verify_key",
]
