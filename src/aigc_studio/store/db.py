"""The database: one SQLAlchemy engine and its sessions, SQLite by default and PostgreSQL by URL.

::

    db = Database("sqlite:///var/aigc.db")                      # creates var/, runs the migrations
    db = Database.from_settings(load_settings())                # AIGC_DATABASE_URL or aigc.toml
    with db.session() as session:                               # commits on success, rolls back on error
        session.add(...)

Opening a :class:`Database` brings its schema to the newest Alembic revision (the migrations ship inside the
package, in ``store/migrations/``), so every entry point sees the same tables. SQLite connections run in WAL
mode (readers never wait for the writer) with foreign keys on and a busy timeout, so several processes can
share one file. ``postgresql://`` URLs use the psycopg 3 driver (``pip install 'aigc-studio[postgres]'``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from aigc_studio.errors import AigcError

if TYPE_CHECKING:
    from aigc_studio.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# How long a SQLite writer waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL advisory lock keys (any fixed 64-bit numbers, the same in every process).
MIGRATION_LOCK_KEY = 0x41494743_0001
WRITE_LOCK_KEY = 0x41494743_0002
# Connection execution option that makes the SQLite "begin" hook take the write lock at once.
_BEGIN_IMMEDIATE = "aigc_begin_immediate"


class DatabaseUnavailableError(AigcError):
    """The database cannot be reached or opened (the server answers 503)."""


class Database:
    """A database opened by URL, migrated to the newest schema.

    Args:
        url: a SQLAlchemy URL: ``sqlite:///var/aigc.db`` (relative to the working directory),
            ``sqlite:////abs/path.db``, ``sqlite://`` (in memory, for tests) or
            ``postgresql+psycopg://user:password@host:5432/name`` (``postgresql://`` means the same).
        migrate: run :meth:`migrate` now (the default; pass False only to inspect an old database).
        echo: log every SQL statement (debugging).

    Raises:
        AigcError: the URL cannot be parsed, or names an unknown database kind or a driver that is not installed.
        DatabaseUnavailableError: the server cannot be reached or the file cannot be opened.
    """

    def __init__(self, url: str, *, migrate: bool = True, echo: bool = False) -> None:
        self.url = _parse_url(url)
        self.dialect = self.url.get_backend_name()
        self.engine = _create_engine(self.url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            try:
                self.migrate()
            except BaseException:
                self.engine.dispose()
                raise

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Database:
        """Open ``settings.database_url`` (see :func:`aigc_studio.settings.load_settings`)."""
        return cls(settings.database_url, **kwargs)

    @property
    def display_url(self) -> str:
        """The URL with its password hidden, for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self, *, write: bool = False, lock: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back when it raises.

        Args:
            write: the transaction reads, then writes. SQLite then takes the write lock at the start
                (``BEGIN IMMEDIATE``), waiting up to the busy timeout for another writer: a transaction that
                starts as a reader and later writes fails at once when another writer came first, instead of
                waiting. PostgreSQL needs nothing (row locks and MVCC).
            lock: also serialise this transaction with every other ``lock=True`` transaction, in any process
                (SQLite: ``BEGIN IMMEDIATE`` already does; PostgreSQL: a transaction-scoped advisory lock).
                The audit log appends under it so the chain never forks.

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
        """
        options = {_BEGIN_IMMEDIATE: True} if (write or lock) and self.dialect == "sqlite" else None
        with self._sessions() as session:
            with _connection_errors(self):
                session.connection(execution_options=options)
            if lock and self.dialect == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            session.commit()

    def migrate(self) -> str | None:
        """Bring the schema to the newest revision (Alembic ``upgrade head``); returns that revision.

        Safe to run from several processes at once: the upgrade runs under SQLite's write lock (PostgreSQL: an
        advisory lock of its own), so only one of them creates the tables.
        """
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with _connection_errors(self):
            connection = self.engine.connect()
        with connection:
            if self.dialect == "sqlite":
                connection.execution_options(**{_BEGIN_IMMEDIATE: True})
            with connection.begin():
                if self.dialect == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                config.attributes["connection"] = connection
                try:
                    command.upgrade(config, "head")
                except CommandError as error:  # e.g. a database written by a newer version of the package
                    raise AigcError(
                        f"cannot migrate the database at {self.display_url}: {error}; if a newer aigc-studio created "
                        "it, upgrade aigc-studio (pip install -U aigc-studio)",
                        param="database_url",
                    ) from None
        return self.current_revision()

    def current_revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        with _connection_errors(self):
            connection = self.engine.connect()
        with connection:
            return MigrationContext.configure(connection).get_current_revision()

    def close(self) -> None:
        """Close every pooled connection (the object must not be used afterwards)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"


def _parse_url(url: str) -> URL:
    if not isinstance(url, str) or not url.strip():
        raise AigcError("database URL is empty; set AIGC_DATABASE_URL, e.g. sqlite:///var/aigc.db", param="database_url")
    try:
        parsed = make_url(url.strip())
    except exc.ArgumentError:
        raise AigcError(
            f"cannot parse database URL {url!r}; use sqlite:///path/to/file.db or "
            "postgresql+psycopg://user:password@host:5432/name",
            param="database_url",
        ) from None
    # psycopg 3 is the driver we install; plain postgresql:// (and Heroku-style postgres://) would mean psycopg2.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise AigcError(
            f"unsupported database {parsed.get_backend_name()!r} in {parsed.render_as_string(hide_password=True)}; "
            "use sqlite:///... or postgresql+psycopg://...",
            param="database_url",
        )
    return parsed


def _create_engine(url: URL, *, echo: bool) -> Engine:
    kwargs: dict[str, Any] = {"echo": echo}
    if url.get_backend_name() == "sqlite":
        in_memory = url.database in (None, "", ":memory:")
        if in_memory:
            # one shared connection, or every new connection would see its own empty database
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            folder = Path(url.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise AigcError(
                    f"cannot create the folder of the SQLite database {url.database} ({error.strerror}); "
                    "choose a path in a writable folder",
                    param="database_url",
                ) from None
    else:
        kwargs["pool_pre_ping"] = True  # a server restart must not leave dead connections in the pool
    try:
        engine = create_engine(url, **kwargs)
    except (exc.NoSuchModuleError, ModuleNotFoundError, ImportError) as error:
        hint = " (pip install 'aigc-studio[postgres]')" if url.get_backend_name() == "postgresql" else ""
        raise AigcError(
            f"database driver for {url.drivername!r} is not installed{hint}: {error}", param="database_url"
        ) from None
    if url.get_backend_name() == "sqlite":
        _configure_sqlite(engine, in_memory=in_memory)
    return engine


def _configure_sqlite(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transactions away from the sqlite3 module (which would BEGIN lazily and commit before DDL) so
        # the "begin" hook below decides how each transaction starts (SQLAlchemy's documented recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock now, so two writers queue instead of both reading the same chain head.
        immediate = connection.get_execution_options().get(_BEGIN_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def _connection_errors(database: Database) -> Iterator[None]:
    """Turn a failure to open a connection into a :class:`DatabaseUnavailableError` saying what to check."""
    try:
        yield
    except exc.DBAPIError as error:
        reason = _first_line(error.orig)
        if database.dialect == "postgresql":
            raise DatabaseUnavailableError(
                f"cannot connect to the database at {database.display_url}: {reason}; check that the server runs "
                "and the host, port, user, password and database name in AIGC_DATABASE_URL",
                param="database_url",
            ) from None
        raise DatabaseUnavailableError(
            f"cannot open the SQLite database {database.url.database}: {reason}; check that it is a SQLite file and "
            "that it and its folder are writable",
            param="database_url",
        ) from None


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if error is not None and str(error).strip() else "no reason given"
