"""``aigc data``: prepare a dataset directory, inspect one, download the public data sets.

    aigc data download e2e --out var/raw/e2e --mirror ../shared/data
    aigc data prepare var/raw/e2e/trainset.csv --val-input var/raw/e2e/devset.csv --source-col mr --target-col ref --out var/data/e2e
    aigc data inspect var/data/e2e

Each command parses its flags, calls one library function and prints the result with Rich.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aigc_studio.data.dataset import TokenDataset, read_dataset_info
from aigc_studio.data.download import MIRROR_ENV_VAR, REGISTRY, download_dataset
from aigc_studio.data.prepare import PrepareConfig, prepare_dataset
from aigc_studio.errors import AigcError

app = typer.Typer(help="Prepare, inspect and download data sets.", no_args_is_help=True)

_DEFAULTS = PrepareConfig()


@app.command("prepare")
def prepare(
    inputs: list[Path] = typer.Argument(..., help="Input files: .csv, .tsv, .jsonl/.json (records or text) or .txt (one document each)."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write."),
    input_format: str = typer.Option(_DEFAULTS.input_format, "--format", help="auto (by extension), csv, tsv, jsonl or txt."),
    source_col: Optional[str] = typer.Option(None, "--source-col", help="Column with the condition (records)."),
    target_col: Optional[str] = typer.Option(None, "--target-col", help="Column with the content to generate (records)."),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="Column with plain text (language-model data)."),
    tokenizer: str = typer.Option(_DEFAULTS.tokenizer, "--tokenizer", help="bpe (byte-level, any language) or char."),
    vocab_size: int = typer.Option(_DEFAULTS.vocab_size, "--vocab-size", help="BPE vocabulary size (ignored by char)."),
    val_fraction: Optional[float] = typer.Option(
        None, "--val-fraction", help=f"Share held out for validation, in (0, 0.5] (default {_DEFAULTS.val_fraction})."
    ),
    val_inputs: Optional[list[Path]] = typer.Option(
        None, "--val-input", metavar="FILE", help="Validation file (repeatable), instead of --val-fraction; same format and columns as INPUTS."
    ),
    seed: int = typer.Option(_DEFAULTS.seed, "--seed", help="Seed of the grouped train/val split."),
    min_chars: int = typer.Option(_DEFAULTS.min_chars, "--min-chars", help="Drop targets (or texts) shorter than this."),
    max_chars: Optional[int] = typer.Option(None, "--max-chars", help="Drop targets (or texts) longer than this."),
    deduplicate: bool = typer.Option(_DEFAULTS.deduplicate, "--dedup/--no-dedup", help="Drop exact and normalised duplicates."),
    shard_tokens: int = typer.Option(_DEFAULTS.shard_tokens, "--shard-tokens", help="Tokens per shard file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset already prepared in --out."),
    delexicalize: Optional[str] = typer.Option(
        None, "--delexicalize", metavar="SLOTS", help="Comma-separated record slots copied verbatim, replaced by placeholders (E2E: name,near)."
    ),
) -> None:
    """Clean, split, tokenise and shard INPUT files into a dataset directory for `aigc train`."""
    if val_inputs and val_fraction is not None:
        raise AigcError("pass either --val-fraction or --val-input, not both: validation files are the whole validation split",
                        param="val_fraction")
    config = PrepareConfig(
        input_format=input_format, source_column=source_col, target_column=target_col, text_column=text_col,
        min_chars=min_chars, max_chars=max_chars, deduplicate=deduplicate, tokenizer=tokenizer, vocab_size=vocab_size,
        val_fraction=_DEFAULTS.val_fraction if val_fraction is None else val_fraction, val_inputs=list(val_inputs or []),
        seed=seed, shard_tokens=shard_tokens, overwrite=overwrite,
        delexicalize=[slot.strip() for slot in (delexicalize or "").split(",") if slot.strip()],
    )
    console = Console()
    with console.status("preparing the dataset..."):
        info = prepare_dataset(inputs, out, config)
    console.print(dataset_summary_table(info, title=f"prepared {out}"))


@app.command("inspect")
def inspect(
    directory: Path = typer.Argument(..., help="A dataset directory written by `aigc data prepare`."),
    split: str = typer.Option("train", "--split", help="Split to show samples from: train or val."),
    samples: int = typer.Option(3, "--samples", "-n", min=0, help="How many decoded samples to show."),
) -> None:
    """Show a prepared dataset's statistics and a few decoded samples."""
    console = Console()
    console.print(dataset_summary_table(read_dataset_info(directory), title=str(directory)))
    if samples:
        console.print(_samples_table(TokenDataset(directory, split), samples))


@app.command("download")
def download(
    name: str = typer.Argument(..., help=f"Data set: {', '.join(REGISTRY)}."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder the data set's files are written to."),
    mirror: Optional[Path] = typer.Option(
        None, "--mirror", envvar=MIRROR_ENV_VAR, help="Copy from MIRROR/NAME/ instead of the network (offline machines)."
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for a server."),
) -> None:
    """Download (or copy from a mirror) a public data set and verify its checksums."""
    console = Console()
    fetched = download_dataset(name, out, mirror=mirror, timeout=timeout, console=Console(stderr=True))
    table = Table(title=Text(f"{name} in {out}"))
    for column in ("file", "from", "verified by"):
        table.add_column(column)
    for item in fetched:
        table.add_row(Text(item.path.name), Text(item.origin), f"{item.verified_by.kind} of {item.verified_by.identifies}")
    console.print(table)
    source = REGISTRY[name]
    console.print(Text(f"licence: {source.licence}"), soft_wrap=True)
    if source.note:
        console.print(Text(f"note: {source.note}"), soft_wrap=True)


def dataset_summary_table(info: dict[str, Any], title: str) -> Table:
    """A Rich table of a dataset.json: inputs, cleaning counts, tokenizer, how the split was made and its sizes."""
    table = Table(title=Text(title), show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    columns = ", ".join(f"{role}={column}" for role, column in info["columns"].items())
    table.add_row("format", Text(f"{info['format']} (columns: {columns})"))
    _add_inputs_and_cleaning(table, "", info["inputs"], info["cleaning"], info["num_records_read"], info["num_records_kept"])
    # Datasets prepared before validation inputs existed have none of these keys.
    val_cleaning = info.get("val_cleaning")
    if val_cleaning is not None:
        _add_inputs_and_cleaning(table, "val ", info["val_inputs"], val_cleaning["steps"],
                                 val_cleaning["num_records_read"], val_cleaning["num_records_kept"])
    tokenizer = info["tokenizer"]
    table.add_row("tokenizer", f"{tokenizer['kind']}, vocab {tokenizer['vocab_size']:,}, ids stored as {info['dtype']}")
    if info.get("split_method") == "val_inputs":
        table.add_row("split", "validation = the --val-input files")
    else:
        table.add_row("split", f"val_fraction {info['val_fraction']}, seed {info['seed']}")
    overlap = info.get("overlap")
    if overlap is not None:
        table.add_row("overlap", Text(
            f"{overlap['val_sources_in_train']:,} validation sources also occur in the training inputs; "
            f"their {overlap['train_records_dropped']:,} training records were dropped, so no source is in both splits"
        ))
    for split, sizes in info["splits"].items():
        sources = f", {sizes['sources']:,} sources" if "sources" in sizes else ""
        table.add_row(split, f"{sizes['records']:,} records{sources}, {sizes['tokens']:,} tokens, {len(sizes['shards'])} shard(s)")
    return table


def _add_inputs_and_cleaning(
    table: Table, prefix: str, inputs: list[dict[str, Any]], cleaning: list[dict[str, Any]], read: int, kept: int
) -> None:
    for item in inputs:
        table.add_row(f"{prefix}input", Text(f"{item['path']} ({item['format']}, {item['rows']:,} rows, sha256 {item['sha256'][:12]}…)"))
    table.add_row(f"{prefix}read", f"{read:,}")
    for step in cleaning:
        table.add_row(f"  {step['step']}", f"{step['before']:,} → {step['after']:,} (-{step['removed']:,})")
    table.add_row(f"{prefix}kept", f"{kept:,}")


def _samples_table(dataset: TokenDataset, samples: int) -> Table:
    table = Table(title=f"{dataset.split} samples")
    if dataset.format == "records":
        table.add_column("source")
        table.add_column("→ target")
        for index in range(min(samples, dataset.num_records)):
            # Text(), not markup: E2E sources such as name[The Eagle] would read as Rich tags.
            table.add_row(*map(Text, dataset.decode_record(index)))
        return table
    # Plain text: evenly spaced 64-token snippets, specials shown so document boundaries are visible.
    table.add_column("text")
    width = min(64, dataset.num_tokens)
    for start in sorted(set(np.linspace(0, dataset.num_tokens - width, num=samples, dtype=np.int64).tolist())):
        ids = dataset.read_tokens(start, width).tolist()
        table.add_row(Text(repr(dataset.tokenizer.decode(ids, skip_special_tokens=False))))
    return table
