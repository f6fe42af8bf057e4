"""``aigc pii detect`` and ``aigc moderate``: personal data and content policy on JSON Lines files.

    aigc pii detect --input messages.jsonl --output redacted.jsonl --mode placeholder
    aigc moderate --input drafts.jsonl --output verdicts.jsonl --policy my-policy.toml

Input lines are ``{"id": ..., "text": "..."}``; every output line is the input line plus the findings.
Two objects are registered by ``cli/main.py``: the ``pii_app`` group (``aigc pii ...``) and the
``moderate`` command (``aigc moderate``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aigc_studio.safety.moderation import Moderator, moderate_jsonl
from aigc_studio.safety.pii import REDACTION_MODES, redact_jsonl

HASH_KEY_ENV_VAR = "AIGC_PII_HASH_KEY"

pii_app = typer.Typer(help="Find and redact personal data.", no_args_is_help=True)


@pii_app.command("detect")
def detect(
    input_path: Path = typer.Option(..., "--input", "-i", help='JSON Lines file of {"id", "text"} objects.'),
    output_path: Path = typer.Option(..., "--output", "-o", help='Where to write the lines with "entities" and "redacted".'),
    mode: str = typer.Option("placeholder", "--mode", help=f"Redaction: {', '.join(REDACTION_MODES)}."),
    hash_key: Optional[str] = typer.Option(
        None, "--hash-key", envvar=HASH_KEY_ENV_VAR, help="Secret for --mode hash (HMAC-SHA256).", show_default=False
    ),
) -> None:
    """Detect emails, phones, resident IDs, bank cards, IP addresses and names; write them and a redacted text."""
    report = redact_jsonl(input_path, output_path, mode, hash_key=hash_key)
    table = Table(title=Text(f"personal data in {input_path}"))
    table.add_column("type")
    table.add_column("found", justify="right")
    for entity_type, count in report.entities_per_type.items():
        table.add_row(entity_type, f"{count:,}")
    console = Console()
    console.print(table)
    console.print(
        Text(f"{report.rows_with_entities:,} of {report.rows:,} lines hold personal data; wrote {report.output} ({mode})"),
        soft_wrap=True,
    )


def moderate(
    input_path: Path = typer.Option(..., "--input", "-i", help='JSON Lines file of {"id", "text"} objects.'),
    output_path: Path = typer.Option(..., "--output", "-o", help="Where to write the lines with the verdicts."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy TOML file (default: the bundled policy)."),
    classifier: Optional[Path] = typer.Option(
        None, "--classifier", help="A classifier saved by ModerationClassifier.save, added to the lexicons."
    ),
) -> None:
    """Check each text against a moderation policy; add flagged, blocked, action, categories and matches."""
    moderator = Moderator.from_policy(policy, classifier=classifier)
    report = moderate_jsonl(input_path, output_path, moderator)
    Console().print(
        Text(
            f"{report.rows:,} lines: {report.flagged:,} flagged, {report.blocked:,} blocked "
            f"(policy {moderator.policy.source}); wrote {report.output}"
        ),
        soft_wrap=True,
    )
