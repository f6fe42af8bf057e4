"""``aigc keys``, ``aigc audit`` and ``aigc db``: API keys, the audit log and the schema, from the terminal.

    aigc keys create --name marketing-site      # prints the secret once
    aigc keys list
    aigc keys revoke marketing-site             # or the prefix shown by `keys list`
    aigc audit verify                           # exit 0 intact, 1 broken (naming the first bad record)
    aigc audit export --since 2026-11-01 --format csv --out audit.csv
    aigc db upgrade

Every command opens the database of the settings (``AIGC_DATABASE_URL``, ``aigc.toml``, default
``sqlite:///var/aigc.db``) unless ``--database-url`` names another. Three Typer groups are registered by
``cli/main.py``: ``keys_app``, ``audit_app`` and ``db_app``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aigc_studio.errors import AigcError
from aigc_studio.settings import load_settings
from aigc_studio.store.audit import EXPORT_FORMATS, AuditLog
from aigc_studio.store.db import Database
from aigc_studio.store.keys import create_key, list_keys, revoke_key

console = Console(highlight=False)

DatabaseUrl = Annotated[
    Optional[str],
    typer.Option("--database-url", help="SQLAlchemy URL; overrides AIGC_DATABASE_URL and aigc.toml.", show_default=False),
]

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="Verify and export the hash-chained audit log.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)


def open_database(database_url: str | None) -> Database:
    """The database named by ``--database-url``, else by the settings; migrated to the newest schema."""
    return Database.from_settings(load_settings(database_url=database_url))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="Who uses the key (unique), e.g. marketing-site.")],
    rate_limit: Annotated[Optional[int], typer.Option("--rate-limit", help="Requests per minute for this key (default: the server's).", show_default=False)] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API key and print its secret, once."""
    db = open_database(database_url)
    info, secret = create_key(db, name, rate_limit_per_minute=rate_limit)
    console.print(Text(f"created API key {info.name!r} ({info.prefix}…)"))
    # The secret alone on stdout's next line, so scripts can capture it; the warning goes to stderr.
    print(secret)
    Console(stderr=True).print("[bold yellow]warning:[/] store this key now; it is not shown again (only its hash is kept)")


@keys_app.command("list")
def keys_list(database_url: DatabaseUrl = None) -> None:
    """List every API key: name, prefix, creation time, status and rate limit (never the secret)."""
    keys = list_keys(open_database(database_url))
    if not keys:
        console.print("no API keys; create one with `aigc keys create --name NAME`")
        return
    table = Table(title="API keys")
    for column in ("name", "prefix", "created (UTC)", "status", "rate limit/min"):
        table.add_column(column)
    for key in keys:
        status = "active" if key.active else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
        limit = str(key.rate_limit_per_minute) if key.rate_limit_per_minute is not None else "default"
        table.add_row(Text(key.name), f"{key.prefix}…", f"{key.created_at:%Y-%m-%d %H:%M}", status, limit)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    name_or_prefix: Annotated[str, typer.Argument(help="The key's name, or its prefix from `aigc keys list`.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke an API key: it stops authenticating at once."""
    info = revoke_key(open_database(database_url), name_or_prefix)
    console.print(Text(f"revoked API key {info.name!r} ({info.prefix}…)"))


@audit_app.command("verify")
def audit_verify(database_url: DatabaseUrl = None) -> None:
    """Check the hash chain of the whole audit log; exit 1 and name the first bad record when it is broken."""
    result = AuditLog(open_database(database_url)).verify()
    if result.ok:
        head = f"; head hash {result.head_hash} (keep it to detect later truncation)" if result.head_hash else ""
        console.print(Text(f"audit log intact: {result.records_checked:,} records{head}"), soft_wrap=True)
        return
    Console(stderr=True, highlight=False).print(
        Text(f"audit log broken at record {result.first_bad_id}: {result.reason}"), soft_wrap=True
    )
    raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    since: Annotated[Optional[str], typer.Option("--since", help="Only records from this UTC date or time on (2026-11-01 or 2026-11-01T09:30).", show_default=False)] = None,
    format: Annotated[str, typer.Option("--format", help=f"{' or '.join(EXPORT_FORMATS)}.")] = "jsonl",
    database_url: DatabaseUrl = None,
) -> None:
    """Export audit records (every field and both hashes) for a compliance review."""
    if format not in EXPORT_FORMATS:
        raise AigcError(f"--format {format!r} is not supported; use one of: {', '.join(EXPORT_FORMATS)}", param="format")
    count = AuditLog(open_database(database_url)).export(_parse_since(since), format, out)  # type: ignore[arg-type]
    console.print(Text(f"wrote {count:,} audit records to {out} ({format})"))


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Create or migrate the schema to the newest revision (opening the database does it too)."""
    db = open_database(database_url)
    console.print(Text(f"database {db.display_url} is at schema revision {db.current_revision()}"), soft_wrap=True)


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise AigcError(f"--since {value!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM", param="since") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
