"""Shared fixtures: paths to the public data sets in ../shared/data, small deterministic corpora, a PostgreSQL server."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AIGC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Tests use tiny models; one thread avoids oversubscribing the two cores when pytest-xdist runs workers.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def watermark_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fixed watermark key: governed generation (aigc write, the server) is then as repeatable as the seed says.

    Live servers started by module- or session-scoped fixtures (before the per-test variables exist) take it
    through ``AIGC_WATERMARK__KEY_FILE`` too.
    """
    path = tmp_path_factory.mktemp("watermark") / "watermark.key"
    path.write_text("5a" * 32 + "\n", encoding="ascii")
    path.chmod(0o600)
    return path


@pytest.fixture(autouse=True)
def isolated_installation(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                          watermark_key_file: Path) -> Path:
    """Every test gets its own database and secret files, so tests never write var/ in the repository nor share
    an audit log (subprocesses inherit the variables)."""
    home = tmp_path_factory.mktemp("installation")
    monkeypatch.setenv("AIGC_DATABASE_URL", f"sqlite:///{home / 'aigc.db'}")
    monkeypatch.setenv("AIGC_WATERMARK__KEY_FILE", str(watermark_key_file))
    monkeypatch.setenv("AIGC_VAULT_KEY_FILE", str(home / "vault.key"))
    monkeypatch.delenv("AIGC_CONFIG", raising=False)
    return home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only public data sets (E2E, AdvertiseGen, BANKING77, Fashion-MNIST, Tiny Shakespeare)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public data sets not found at {SHARED_DATA}; set AIGC_SHARED_DATA to their folder")
    return SHARED_DATA


@pytest.fixture(scope="session")
def e2e_slice(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The first 400 rows of the E2E training set as a CSV (mr, ref): enough to train a few dozen steps."""
    lines = (shared_data / "e2e" / "trainset.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path_factory.mktemp("e2e") / "e2e-slice.csv"
    path.write_text("".join(lines[:401]), encoding="utf-8")
    return path


# --- PostgreSQL for storage tests ----------------------------------------------------------------------------
# `postgres_url` is an admin URL of a PostgreSQL server: AIGC_TEST_POSTGRES_URL when set, else a throwaway
# cluster started for this test session (initdb + pg_ctl, trust auth, in a temporary folder, stopped at the end).
# Tests that need it skip, with the reason, when neither can be had. `fresh_postgres_database` gives each test
# its own empty schema on that server.

POSTGRES_URL_ENV = "AIGC_TEST_POSTGRES_URL"


def _postgres_bin() -> Path | None:
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _start_cluster(bin_dir: Path) -> tuple[str, Callable[[], None]]:
    """Start a cluster as the `postgres` user when we are root (postgres refuses to run as root)."""
    as_postgres: list[str] = []
    root = tempfile.mkdtemp(prefix="aigc-pg-")
    if os.geteuid() == 0:
        import pwd  # Unix only, like running as root

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            raise RuntimeError("running as root and there is no 'postgres' user to run the server as") from None
        os.chown(root, user.pw_uid, user.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data = Path(root) / "data"

    def run(*args: str) -> None:
        done = subprocess.run([*as_postgres, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    def stop() -> None:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        for _attempt in range(3):  # another process may take the free port before the server binds it
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
            try:
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", f"{root}/server.log", "-w", "start")
                return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop
            except RuntimeError:
                continue
        raise RuntimeError(f"the server did not start; see {root}/server.log")
    except BaseException:
        stop()
        raise


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An admin URL of a running PostgreSQL server (see the comment above); skips when there is none."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL tests need the psycopg driver: pip install 'aigc-studio[postgres]'")
    if os.environ.get(POSTGRES_URL_ENV):
        given = sqlalchemy.engine.make_url(os.environ[POSTGRES_URL_ENV])
        if given.drivername in ("postgresql", "postgres"):  # plain postgresql:// would mean psycopg2
            given = given.set(drivername="postgresql+psycopg")
        yield given.render_as_string(hide_password=False)
        return
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL not available: no initdb on PATH or in /usr/lib/postgresql/*/bin; install "
                    f"postgresql (apt-get install postgresql) or set {POSTGRES_URL_ENV}")
    try:
        url, stop = _start_cluster(bin_dir)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"PostgreSQL not available: could not start a throwaway cluster with {bin_dir}: {error}")
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def fresh_postgres_database(postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty schema on the test server (as its search path), dropped after the test.

    A schema rather than a database: creating a database copies a template and takes about ten times longer.
    """
    name = f"aigc_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        url = sqlalchemy.engine.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={name}"})
        yield url.render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        admin.dispose()
