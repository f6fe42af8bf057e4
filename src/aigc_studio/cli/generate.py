"""``aigc generate``: sample or beam-search from a model directory, one prompt or a JSON Lines batch.

    aigc generate --model e2e-copy --prompt "name[The Eagle], eatType[pub]" --logprobs 3 --json
    aigc generate --model e2e-copy --prompt "name[The Eagle], eatType[pub]" --watermark --min-tokens 60

``--logprobs K`` returns every token's log-probability and its K most likely alternatives, printed as a table,
or with ``--json`` in the OpenAI completions ``logprobs`` shape. ``--watermark`` marks the text with the
installation's key (see docs/safety.md, "Watermark"); ``aigc watermark detect`` finds it again.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from aigc_studio.backends.base import Backend, Candidate, GenerationResult, openai_logprobs
from aigc_studio.backends.registry import default_params, load_backend
from aigc_studio.errors import AigcError
from aigc_studio.fileio import read_jsonl, write_jsonl
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.safety.watermark import WatermarkConfig
from aigc_studio.settings import load_settings

console = Console(highlight=False)

SAMPLING = "Sampling"
GOVERNANCE = "Watermark"


def generate(
    model: Annotated[str, typer.Option(help="A \\[models.NAME] of aigc.toml, a model directory (builtin or transformers) or a bundled model's name (e2e-copy).")],
    prompt: Annotated[Optional[str], typer.Option(help="One prompt: the source attributes of a conditional model, or text to continue.")] = None,
    input_path: Annotated[Optional[Path], typer.Option("--input", help='JSON Lines of {"id": ..., "source": ...} or {"id": ..., "prompt": ...}.')] = None,
    output_path: Annotated[Optional[Path], typer.Option("--output", help="Where --input results go (each input line plus \"text\" and, when n > 1, \"candidates\").")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the single-prompt result as JSON.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts generated together in --input mode.")] = 16,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: the model's device setting, else cpu).")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="none or int8: int8 weights decode faster on the CPU (default: the model's quantize setting, else none; docs/generation.md).")] = None,
    temperature: Annotated[Optional[float], typer.Option(rich_help_panel=SAMPLING, help="0 = greedy.")] = None,
    top_k: Annotated[Optional[int], typer.Option(rich_help_panel=SAMPLING, help="0 = off.")] = None,
    top_p: Annotated[Optional[float], typer.Option(rich_help_panel=SAMPLING, help="In (0, 1]; 1 = off.")] = None,
    min_p: Annotated[Optional[float], typer.Option(rich_help_panel=SAMPLING, help="In [0, 1]; 0 = off.")] = None,
    repetition_penalty: Annotated[Optional[float], typer.Option(rich_help_panel=SAMPLING, help="> 1 discourages repeats.")] = None,
    presence_penalty: Annotated[Optional[float], typer.Option(rich_help_panel=SAMPLING)] = None,
    frequency_penalty: Annotated[Optional[float], typer.Option(rich_help_panel=SAMPLING)] = None,
    no_repeat_ngram_size: Annotated[Optional[int], typer.Option(rich_help_panel=SAMPLING)] = None,
    max_tokens: Annotated[Optional[int], typer.Option(rich_help_panel=SAMPLING)] = None,
    min_tokens: Annotated[Optional[int], typer.Option(rich_help_panel=SAMPLING, help="End of sequence suppressed until N tokens.")] = None,
    stop: Annotated[Optional[list[str]], typer.Option(rich_help_panel=SAMPLING, help="Stop string (repeatable).")] = None,
    n: Annotated[Optional[int], typer.Option(rich_help_panel=SAMPLING, help="Candidates per prompt.")] = None,
    seed: Annotated[Optional[int], typer.Option(rich_help_panel=SAMPLING, help="Same seed, same output.")] = None,
    num_beams: Annotated[Optional[int], typer.Option(rich_help_panel=SAMPLING, help="> 1 uses beam search.")] = None,
    length_penalty: Annotated[Optional[float], typer.Option(rich_help_panel=SAMPLING)] = None,
    logprobs: Annotated[Optional[int], typer.Option(rich_help_panel=SAMPLING, help="Show each token's log-probability and its K most likely alternatives (0..20).")] = None,
    watermark: Annotated[bool, typer.Option("--watermark", rich_help_panel=GOVERNANCE, help="Mark the text with the keyed green-list watermark.")] = False,
    watermark_key_file: Annotated[Optional[Path], typer.Option(rich_help_panel=GOVERNANCE, help="Key file for --watermark (default: the settings' watermark.key_file, created on first use).")] = None,
) -> None:
    """Generate text from a model directory: one --prompt, or a batch with --input/--output."""
    if (prompt is None) == (input_path is None):
        raise AigcError("give exactly one of --prompt TEXT or --input FILE.jsonl")
    if input_path is not None and output_path is None:
        raise AigcError("--input needs --output FILE.jsonl for the results")
    if watermark_key_file is not None and not watermark:
        raise AigcError("--watermark-key-file is only used with --watermark; add --watermark or leave the key file out")
    backend = load_backend(model, device=device, quantize=quantize)
    overrides = {
        "temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p,
        "repetition_penalty": repetition_penalty, "presence_penalty": presence_penalty,
        "frequency_penalty": frequency_penalty, "no_repeat_ngram_size": no_repeat_ngram_size,
        "max_tokens": max_tokens, "min_tokens": min_tokens, "stop": stop, "n": n, "seed": seed,
        "num_beams": num_beams, "length_penalty": length_penalty, "logprobs": logprobs,
        "watermark": _watermark_config(watermark_key_file) if watermark else None,
    }
    params = default_params(backend).replace(**{key: value for key, value in overrides.items() if value is not None})
    if prompt is not None:
        result = backend.generate([prompt], params)[0]
        _print_result(result, params, as_json)
    else:
        count = generate_file(backend, input_path, output_path, params, batch_size=batch_size)
        console.print(f"wrote {count} results to {output_path}")


def _watermark_config(key_file: Path | None) -> WatermarkConfig:
    """The installation's watermark (settings), with the key from ``key_file`` when given; creates a missing key."""
    settings = load_settings().watermark
    return WatermarkConfig.from_key_file(key_file or settings.key_file, create=True, gamma=settings.gamma,
                                         delta=settings.delta, z_threshold=settings.z_threshold)


def generate_file(backend: Backend, input_path: Path, output_path: Path, params: SamplingParams, *, batch_size: int) -> int:
    """Generate for every line of a JSON Lines file; returns the number of lines written.

    Raises:
        AigcError: a line has neither "source" nor "prompt" (the message gives its number), or the file is empty.
    """
    rows: list[dict[str, Any]] = []
    prompts: list[str] = []
    for line_number, row in read_jsonl(input_path):
        text = row.get("source", row.get("prompt"))
        if not isinstance(text, str):
            raise AigcError(f'{input_path}:{line_number}: expected a "source" or "prompt" string field')
        rows.append(row)
        prompts.append(text)
    if not rows:
        raise AigcError(f"{input_path} has no JSON lines; add one object per line")
    progress = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True)
    with progress:
        task = progress.add_task("generate", total=len(rows))
        for start in range(0, len(rows), batch_size):
            results = backend.generate(prompts[start:start + batch_size], params)
            for row, result in zip(rows[start:start + batch_size], results):
                row["text"] = result.candidates[0].text
                if params.logprobs is not None:  # of "text", the first candidate
                    row["logprobs"] = openai_logprobs(row["text"], result.candidates[0].logprobs or [])
                if len(result.candidates) > 1:
                    row["candidates"] = [candidate.text for candidate in result.candidates]
            progress.advance(task, len(results))
    write_jsonl(output_path, rows)
    return len(rows)


def _candidate_json(candidate: Candidate) -> dict[str, Any]:
    values = asdict(candidate)
    if candidate.logprobs is not None:
        values["logprobs"] = openai_logprobs(candidate.text, candidate.logprobs)
    return values


def _print_result(result: GenerationResult, params: SamplingParams, as_json: bool) -> None:
    if as_json:
        payload = {
            "prompt": result.prompt,
            "candidates": [_candidate_json(candidate) for candidate in result.candidates],
            "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens},
        }
        if params.watermark is not None:
            payload["watermark"] = params.watermark.describe()
        print(json.dumps(payload, ensure_ascii=False))
        return
    for index, candidate in enumerate(result.candidates, start=1):
        label = f"[{index}] " if len(result.candidates) > 1 else ""
        console.print(Text(f"{label}{candidate.text}"), soft_wrap=True)
        if candidate.logprobs is not None:
            console.print(_logprob_table(candidate))
    if params.watermark is not None:
        console.print(f"watermarked with key {params.watermark.key_id}")


def _logprob_table(candidate: Candidate) -> Table:
    """One row per generated token: its text, log-probability, probability and the alternatives."""
    table = Table(show_edge=False, pad_edge=False)
    for column, justify in (("token", "left"), ("logprob", "right"), ("p", "right"), ("alternatives", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for item in candidate.logprobs or []:
        alternatives = ", ".join(f"{token!r} {value:.2f}" for token, value in item.top_logprobs.items())
        table.add_row(Text(repr(item.token)), f"{item.logprob:.3f}", f"{math.exp(item.logprob):.3f}", Text(alternatives))
    return table
