"""``aigc models list`` and ``aigc export``: what the registry knows, and builtin models for other runtimes.

    aigc models list
    aigc export --model e2e-copy --format hf --out var/export/e2e-copy-hf
    aigc export --model var/models/e2e-lstm --format torchscript --out var/export/e2e-lstm-ts
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aigc_studio.backends.registry import builtin_model_directory, list_models
from aigc_studio.errors import AigcError
from aigc_studio.models.export import EXPORT_FORMATS, export_model
from aigc_studio.settings import load_settings

console = Console(highlight=False)
app = typer.Typer(help="The models this installation knows (aigc.toml [models.NAME] tables and bundled models).",
                  no_args_is_help=True)

DTYPE_NAMES = ("float32", "bfloat16", "float16")


@app.command("list")
def list_command(
    config: Annotated[Optional[Path], typer.Option(help="Settings file (default aigc.toml when present).")] = None,
    hashes: Annotated[bool, typer.Option("--hashes/--no-hashes", help="Hash the weights (reads every weights file).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
) -> None:
    """List every model with its backend, prompt format, context length and weights hash."""
    entries = list_models(load_settings(config), with_hashes=hashes)
    if as_json:
        for entry in entries:
            print(json.dumps(asdict(entry), ensure_ascii=False))
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("name", "backend", "prompt format", "context", "weights sha256", "location"):
        # names and backends stay whole on a narrow terminal; the location (a long path) gives way
        table.add_column(column, no_wrap=column in ("name", "backend"))
    for entry in entries:
        location = Text(entry.location)
        if entry.problem:
            location = Text(f"{entry.location} ({entry.problem})", style="red")
        table.add_row(Text(entry.name), entry.backend, entry.prompt_format or "?",
                      str(entry.context_length) if entry.context_length else "?",
                      entry.weights_sha256[:12] or "-", location)
    console.print(table)


def export(
    model: Annotated[str, typer.Option(help="A builtin model: \\[models.NAME] name, model directory or bundled name.")],
    out: Annotated[Path, typer.Option(help="Directory to write (created).")],
    export_format: Annotated[str, typer.Option("--format", help="hf (a GPT as LlamaForCausalLM) or torchscript (the LSTM).")] = "hf",
    dtype: Annotated[str, typer.Option(help="hf weights dtype: float32, bfloat16 or float16.")] = "float32",
) -> None:
    """Export a model trained here: --format hf writes a LlamaForCausalLM directory that transformers, vLLM,
    TGI and llama.cpp's converter load; --format torchscript writes a traced module (model.pt)."""
    if export_format not in EXPORT_FORMATS:
        raise AigcError(f"unknown --format {export_format!r}; use one of: {', '.join(EXPORT_FORMATS)}", param="format")
    if dtype not in DTYPE_NAMES:
        raise AigcError(f"unknown --dtype {dtype!r}; use one of: {', '.join(DTYPE_NAMES)}", param="dtype")
    import torch

    directory = builtin_model_directory(model)
    written = export_model(directory, out, export_format, dtype=getattr(torch, dtype))
    console.print(f"exported {directory} as {export_format} to {written}")
