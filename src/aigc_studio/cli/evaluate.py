"""``aigc eval``: score a JSON Lines file of generated texts into JSON and an HTML report; ``aigc eval index``
builds the n-gram index that originality is measured against."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from aigc_studio.data.loading import open_input
from aigc_studio.errors import AigcError
from aigc_studio.evaluation.originality import NgramIndex
from aigc_studio.evaluation.report import EvalReport, evaluate_jsonl, write_report

console = Console(highlight=False)

app = typer.Typer(
    help="Evaluate generated texts (aigc eval --hyp out.jsonl --report report.html), or build an originality index.",
    invoke_without_command=True,
    no_args_is_help=False,
)

# Corpus columns tried in order when --column is not given: E2E, our records, AdvertiseGen, plain text.
CORPUS_COLUMNS = ("ref", "target", "summary", "text")


@app.callback()
def evaluate(
    ctx: typer.Context,
    hyp: Annotated[Optional[Path], typer.Option(help='JSON Lines of {"id", "text", optional "attributes", "keywords", "references"}.')] = None,
    ref: Annotated[Optional[Path], typer.Option(help="E2E-style CSV (mr, ref): references matched by each line's attributes.")] = None,
    train_index: Annotated[Optional[Path], typer.Option(help="Directory from `aigc eval index`, for originality.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Self-contained HTML report to write.")] = None,
    json_out: Annotated[Optional[Path], typer.Option(help="JSON results to write (default: next to --report).")] = None,
) -> None:
    """Compute every applicable metric over --hyp; write the JSON results and the HTML report."""
    if ctx.invoked_subcommand is not None:
        return
    if hyp is None:
        raise AigcError("give --hyp FILE.jsonl and --report FILE.html (or use `aigc eval index` to build an index)", param="hyp")
    if report is None and json_out is None:
        raise AigcError("nowhere to write the evaluation; give --report FILE.html and/or --json-out FILE.json", param="report")
    if json_out is None and report is not None:
        json_out = report.with_suffix(".json")
    result = evaluate_jsonl(hyp, references_csv=ref, train_index=train_index)
    written = write_report(result, html_path=report, json_path=json_out)
    _print_summary(result)
    for path in written:
        console.print(f"wrote {path}")


@app.command("index")
def index(
    corpus: Annotated[Path, typer.Option(help="Training corpus: .csv, .tsv, .jsonl or .txt.")],
    out: Annotated[Path, typer.Option(help="Directory to write the index into.")],
    column: Annotated[Optional[str], typer.Option(help=f"Column holding the texts (default: the first of {', '.join(CORPUS_COLUMNS)}).")] = None,
    n: Annotated[int, typer.Option("--n", help="n-gram size in tokens (words; characters for Chinese).")] = 8,
) -> None:
    """Build the hashed n-gram index of a training corpus (for the originality metrics)."""
    table = open_input(corpus)
    if column is None:
        column = next((name for name in CORPUS_COLUMNS if name in table.columns), None)
        if column is None:
            raise AigcError(f"{corpus} has none of the columns {', '.join(CORPUS_COLUMNS)}; pass --column "
                            f"(its columns are: {', '.join(table.columns)})", param="column")
    elif column not in table.columns:
        raise AigcError(f"column {column!r} not found in {corpus}; columns are: {', '.join(table.columns)}", param="column")
    ngram_index = NgramIndex.build((row.get(column, "") for _, row in table.rows()), n=n)
    ngram_index.save(out)
    console.print(f"indexed {ngram_index.num_texts} texts, {len(ngram_index):,} distinct {n}-grams into {out}")


def _print_summary(result: EvalReport) -> None:
    table = Table(title=f"{len(result.lines)} lines", title_justify="left")
    for header in ("score", "value"):
        table.add_column(header, justify="right" if header == "value" else "left")
    for name, value in result.corpus.items():
        table.add_row(name, f"{value:.4f}")
    for name, summary in result.metrics.items():
        table.add_row(f"{name} (mean, {'↑' if summary.direction == 'higher' else '↓'})", f"{summary.mean:.4f}")
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
