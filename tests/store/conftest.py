"""Every storage test runs twice: on a SQLite file and on a fresh PostgreSQL database (skipped, with the
reason, when no PostgreSQL server can be had; see ``postgres_url`` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aigc_studio.store.db import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'aigc.db'}"
    return request.getfixturevalue("fresh_postgres_database")


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The database at ``database_url``, migrated, closed after the test."""
    database = Database(database_url)
    yield database
    database.close()
