"""`aigc keys`, `aigc audit` and `aigc db` through Typer's CliRunner, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from sqlalchemy import text
from typer.testing import CliRunner

from aigc_studio.cli.admin import audit_app, db_app, keys_app
from aigc_studio.errors import AigcError
from aigc_studio.store.audit import AuditEntry, AuditLog
from aigc_studio.store.db import Database
from aigc_studio.store.keys import verify_key

# Registered the way cli/main.py registers them.
app = typer.Typer()
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")
runner = CliRunner()


def test_keys_create_list_revoke(database_url: str) -> None:
    created = runner.invoke(app, ["keys", "create", "--name", "site", "--database-url", database_url])
    assert created.exit_code == 0, created.output
    secret = next(line for line in created.stdout.splitlines() if line.startswith("aigc-") and len(line) == 45)
    assert "not shown again" in created.stderr
    db = Database(database_url)
    assert verify_key(db, secret) is not None

    listed = runner.invoke(app, ["keys", "list", "--database-url", database_url])
    assert listed.exit_code == 0 and "site" in listed.stdout and secret[:13] in listed.stdout
    assert secret not in listed.stdout

    revoked = runner.invoke(app, ["keys", "revoke", "site", "--database-url", database_url])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert verify_key(db, secret) is None
    again = runner.invoke(app, ["keys", "revoke", "site", "--database-url", database_url])
    assert isinstance(again.exception, AigcError) and "already revoked" in str(again.exception)
    db.close()


def test_audit_verify_exit_codes_and_export(database_url: str, tmp_path: Path) -> None:
    db = Database(database_url)
    log = AuditLog(db)
    for number in range(3):
        log.append(AuditEntry(kind="completion", model="e2e-copy", outputs=[f"text {number}"], seed=number))

    intact = runner.invoke(app, ["audit", "verify", "--database-url", database_url])
    assert intact.exit_code == 0 and "intact: 3 records" in intact.stdout and log.verify().head_hash in intact.stdout

    out = tmp_path / "audit.jsonl"
    exported = runner.invoke(app, ["audit", "export", "--since", "2020-01-01", "--out", str(out), "--database-url", database_url])
    assert exported.exit_code == 0 and "wrote 3 audit records" in exported.stdout
    assert [json.loads(line)["seed"] for line in out.read_text(encoding="utf-8").splitlines()] == [0, 1, 2]
    future = runner.invoke(app, ["audit", "export", "--since", "2999-01-01", "--format", "csv", "--out",
                                 str(tmp_path / "none.csv"), "--database-url", database_url])
    assert future.exit_code == 0 and "wrote 0 audit records" in future.stdout
    bad_date = runner.invoke(app, ["audit", "export", "--since", "yesterday", "--out", str(out), "--database-url", database_url])
    assert isinstance(bad_date.exception, AigcError) and "YYYY-MM-DD" in str(bad_date.exception)

    with db.session() as session:
        session.execute(text("UPDATE audit_records SET outputs = :o WHERE id = 2"), {"o": json.dumps(["forged"])})
    broken = runner.invoke(app, ["audit", "verify", "--database-url", database_url])
    assert broken.exit_code == 1 and "broken at record 2" in broken.stderr and "edited" in broken.stderr
    db.close()


def test_db_upgrade_reports_the_revision(database_url: str) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--database-url", database_url])
    assert result.exit_code == 0 and "schema revision" in result.stdout


def test_bad_database_url_is_a_user_error() -> None:
    result = runner.invoke(app, ["keys", "list", "--database-url", "mysql://x@localhost/y"])
    assert isinstance(result.exception, AigcError) and "unsupported database" in str(result.exception)
