"""API keys: created once, shown once, stored only as a hash.

::

    info, secret = create_key(db, "marketing-site")   # give `secret` to the caller; it cannot be shown again
    verify_key(db, secret)                            # -> ApiKeyInfo, or None for unknown or revoked keys
    revoke_key(db, "marketing-site")                  # by name, or by the prefix `aigc keys list` shows

A secret is ``aigc-`` followed by 40 URL-safe characters (240 random bits from :mod:`secrets`). Only its
sha256 is stored: a plain hash is enough for a random secret of that length (salts and slow hashes protect
guessable passwords, and nothing about such a secret can be guessed), and it lets :func:`verify_key` find the
key by an indexed lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from aigc_studio.errors import AigcError
from aigc_studio.store.db import Database
from aigc_studio.store.models import ApiKey, utc_now

SECRET_PREFIX = "aigc-"
SECRET_RANDOM_BYTES = 30  # 30 bytes -> 40 URL-safe base64 characters
PREFIX_LENGTH = 8  # random characters after "aigc-" kept in clear to tell keys apart
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class ApiKeyInfo:
    """What is known about a key (never its secret).

    Attributes:
        id: the key's row id (audit records refer to it).
        name: the name given at creation, unique.
        prefix: ``aigc-`` and the first 8 random characters of the secret, to recognise it in lists.
        created_at: when it was created (UTC).
        revoked_at: when it was revoked, or None while it is active.
        rate_limit_per_minute: this key's request limit, or None for the server's default.
    """

    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    rate_limit_per_minute: int | None

    @property
    def active(self) -> bool:
        """Whether the key still authenticates."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times as ISO strings)."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["revoked_at"] = self.revoked_at.isoformat() if self.revoked_at else None
        data["active"] = self.active
        return data


def hash_secret(secret: str) -> str:
    """The sha256 hex digest stored for ``secret``."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_key(db: Database, name: str, *, rate_limit_per_minute: int | None = None) -> tuple[ApiKeyInfo, str]:
    """Create an active key called ``name``.

    Returns:
        ``(info, secret)``: the secret is returned here and nowhere else, ever.

    Raises:
        AigcError: an empty or too long name, a name already in use, or a rate limit below 1.
    """
    name = _check_name(name)
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise AigcError(f"rate limit must be at least 1 request per minute, got {rate_limit_per_minute}", param="rate_limit")
    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_RANDOM_BYTES)
    taken = AigcError(f"an API key named {name!r} already exists; choose another name", param="name")
    try:
        with db.session(write=True) as session:
            if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
                raise taken
            row = ApiKey(
                name=name, prefix=secret[: len(SECRET_PREFIX) + PREFIX_LENGTH], key_hash=hash_secret(secret),
                created_at=utc_now(), revoked_at=None, rate_limit_per_minute=rate_limit_per_minute,
            )
            session.add(row)
            session.flush()
            info = _info(row)
    except IntegrityError:  # another process created the same name between our check and our insert
        raise taken from None
    return info, secret


def verify_key(db: Database, secret: str) -> ApiKeyInfo | None:
    """The active key whose secret is ``secret``, or None (unknown, revoked or malformed).

    The lookup is by the secret's hash, so the secret itself is never compared; the final comparison of the
    two hashes is constant-time anyway so that its timing says nothing.
    """
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        return None
    digest = hash_secret(secret)
    with db.session() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
        if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
            return None
        return _info(row)


def list_keys(db: Database, *, include_revoked: bool = True) -> list[ApiKeyInfo]:
    """Every key, oldest first (revoked ones too unless ``include_revoked`` is False)."""
    statement = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        statement = statement.where(ApiKey.revoked_at.is_(None))
    with db.session() as session:
        return [_info(row) for row in session.scalars(statement)]


def revoke_key(db: Database, name_or_prefix: str) -> ApiKeyInfo:
    """Revoke the key with this name or prefix (``aigc-AbCdEfGh`` or just ``AbCdEfGh``); returns it revoked.

    Raises:
        AigcError: no key matches, several keys share the prefix, or the key is already revoked.
    """
    wanted = name_or_prefix.strip()
    prefix = wanted if wanted.startswith(SECRET_PREFIX) else SECRET_PREFIX + wanted
    with db.session(write=True) as session:
        rows = list(session.scalars(select(ApiKey).where(or_(ApiKey.name == wanted, ApiKey.prefix == prefix))))
        by_name = [row for row in rows if row.name == wanted]
        rows = by_name or rows
        if not rows:
            raise AigcError(f"no API key named or prefixed {wanted!r}; `aigc keys list` shows them", param="name")
        if len(rows) > 1:
            names = ", ".join(row.name for row in rows)
            raise AigcError(f"prefix {wanted!r} matches several keys ({names}); revoke by name instead", param="name")
        row = rows[0]
        if row.revoked_at is not None:
            raise AigcError(f"API key {row.name!r} was already revoked at {row.revoked_at.isoformat()}", param="name")
        row.revoked_at = utc_now()
        return _info(row)


def any_active_key(db: Database) -> bool:
    """Whether at least one key is active (the server then requires a key on every ``/v1`` call)."""
    with db.session() as session:
        return bool(session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))))


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise AigcError("API key name is empty; give a name that says who uses the key", param="name")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise AigcError(f"API key name is {len(name)} characters long; use at most {MAX_NAME_LENGTH}", param="name")
    return name


def _info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id, name=row.name, prefix=row.prefix, created_at=row.created_at, revoked_at=row.revoked_at,
        rate_limit_per_minute=row.rate_limit_per_minute,
    )
