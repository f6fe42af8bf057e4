"""Database: migrations build the schema the models describe, SQLite settings, clear errors for bad URLs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from aigc_studio.errors import AigcError
from aigc_studio.settings import load_settings
from aigc_studio.store.db import MIGRATIONS_DIR, Database, DatabaseUnavailableError
from aigc_studio.store.models import Base
from aigc_studio.support import models as support_models  # noqa: F401 - its tables are in the migrations too

TABLES = {"alembic_version", "api_keys", "audit_records", "audit_output_hashes", "content_items", "content_tags"}


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def test_migrations_create_the_schema_of_the_models(db: Database) -> None:
    assert TABLES <= set(inspect(db.engine).get_table_names())
    assert db.current_revision() == head_revision()
    with db.engine.connect() as connection:
        # The migrations and the declarative models (store's and support's, both imported above) describe the
        # same tables, columns and indexes.
        context = MigrationContext.configure(
            connection, opts={"include_name": lambda name, kind, _parent: kind != "table" or name in Base.metadata.tables}
        )
        assert compare_metadata(context, Base.metadata) == []


def test_opening_twice_is_a_no_op(database_url: str) -> None:
    first = Database(database_url)
    second = Database(database_url)
    assert second.current_revision() == first.current_revision() == head_revision()
    first.close()
    second.close()


def test_a_schema_from_a_newer_version_is_a_clear_error(db: Database, database_url: str) -> None:
    with db.session() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(AigcError, match="Can't locate revision.*9999_from_the_future.*upgrade aigc-studio"):
        Database(database_url)


def test_session_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        session.execute(text("INSERT INTO api_keys (name, prefix, key_hash, created_at) VALUES ('a', 'p', 'h', CURRENT_TIMESTAMP)"))
        raise RuntimeError("boom")
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM api_keys")).scalar() == 0


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_creates_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "aigc.db"
    db = Database(f"sqlite:///{path}")
    assert path.is_file()
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    db.close()


def test_from_settings_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("AIGC_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)  # no aigc.toml here
    db = Database.from_settings(load_settings())
    assert str(db.url) == url and (tmp_path / "env.db").is_file()
    db.close()


def test_in_memory_sqlite_keeps_one_database() -> None:
    db = Database("sqlite://")
    assert "api_keys" in inspect(db.engine).get_table_names()
    db.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "database URL is empty"),
        ("not a url", "cannot parse database URL"),
        ("mysql://user@localhost/aigc", "unsupported database 'mysql'"),
        ("postgresql+nosuchdriver://u@localhost/x", "driver for 'postgresql+nosuchdriver' is not installed"),
    ],
)
def test_bad_url_is_a_clear_error(url: str, expected: str) -> None:
    with pytest.raises(AigcError, match=re.escape(expected)) as caught:
        Database(url)
    assert caught.value.param == "database_url"


def test_unreachable_server_names_the_url_and_the_fix() -> None:
    # port 1 on localhost: nothing listens there, the connection is refused at once
    with pytest.raises(DatabaseUnavailableError, match=r"cannot connect to the database at postgresql\+psycopg://aigc:\*\*\*@127.0.0.1:1/aigc.*check that the server runs"):
        Database("postgresql://aigc:secret@127.0.0.1:1/aigc")


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(DatabaseUnavailableError, match="cannot open the SQLite database .*notes.db: file is not a database"):
        Database(f"sqlite:///{path}")


def test_unwritable_sqlite_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(AigcError, match="cannot create the folder of the SQLite database"):
        Database(f"sqlite:///{blocker / 'aigc.db'}")
