"""API keys: the secret is shown once and only its hash is stored; revoked keys stop working."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from aigc_studio.errors import AigcError
from aigc_studio.store.db import Database
from aigc_studio.store.keys import any_active_key, create_key, list_keys, revoke_key, verify_key


def test_create_stores_the_hash_never_the_secret(db: Database) -> None:
    info, secret = create_key(db, "marketing-site")
    assert secret.startswith("aigc-") and len(secret) == 45
    assert info.prefix == secret[:13] and info.active
    with db.session() as session:
        rows = session.execute(text("SELECT * FROM api_keys")).mappings().all()
    assert len(rows) == 1
    assert rows[0]["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) for value in rows[0].values())


def test_verify_accepts_the_secret_and_nothing_else(db: Database) -> None:
    info, secret = create_key(db, "app", rate_limit_per_minute=30)
    verified = verify_key(db, secret)
    assert verified is not None and verified.id == info.id and verified.rate_limit_per_minute == 30
    assert verify_key(db, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert verify_key(db, "") is None
    assert verify_key(db, "Bearer " + secret) is None


def test_revoke_by_name_or_prefix_stops_the_key(db: Database) -> None:
    _, first = create_key(db, "first")
    second_info, second = create_key(db, "second")
    assert any_active_key(db)
    assert revoke_key(db, "first").revoked_at is not None
    assert verify_key(db, first) is None
    revoke_key(db, second_info.prefix.removeprefix("aigc-"))  # the prefix without the marker works too
    assert verify_key(db, second) is None
    assert not any_active_key(db)
    assert [key.active for key in list_keys(db)] == [False, False]
    assert list_keys(db, include_revoked=False) == []


def test_key_errors_are_clear(db: Database) -> None:
    create_key(db, "app")
    with pytest.raises(AigcError, match="already exists"):
        create_key(db, "app")
    with pytest.raises(AigcError, match="name is empty"):
        create_key(db, "  ")
    with pytest.raises(AigcError, match="no API key named or prefixed 'nobody'"):
        revoke_key(db, "nobody")
    revoke_key(db, "app")
    with pytest.raises(AigcError, match="already revoked"):
        revoke_key(db, "app")


def test_no_key_means_no_active_key(db: Database) -> None:
    assert not any_active_key(db)
    assert list_keys(db) == []
