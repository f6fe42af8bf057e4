"""``aigc write TASK``: write marketing content through the content pipeline, one request or a JSON Lines batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.content.pipeline import ContentPipeline, ContentResult
from aigc_studio.content.requests import ContentRequest, make_request, request_from_json
from aigc_studio.content.tasks import TASKS, get_task
from aigc_studio.errors import AigcError
from aigc_studio.fileio import read_jsonl, write_jsonl
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.registry import resolve_model

console = Console(highlight=False)

BRIEF = "Brief"
SAMPLING = "Sampling"


def write(
    task: Annotated[str, typer.Argument(help=f"What to write: {', '.join(TASKS)}.")],
    attributes: Annotated[Optional[str], typer.Option(help="Facts: 'name[The Eagle], food[French]', 'name=The Eagle; food=French' or JSON.", rich_help_panel=BRIEF)] = None,
    audience: Annotated[Optional[str], typer.Option(help="Who it is for.", rich_help_panel=BRIEF)] = None,
    tone: Annotated[Optional[str], typer.Option(help="How it should sound, e.g. playful.", rich_help_panel=BRIEF)] = None,
    keywords: Annotated[Optional[str], typer.Option(help="Comma-separated terms that must appear.", rich_help_panel=BRIEF)] = None,
    forbid: Annotated[Optional[str], typer.Option(help="Comma-separated terms that must not appear.", rich_help_panel=BRIEF)] = None,
    language: Annotated[Optional[str], typer.Option(help="en or zh (default: zh when the attributes hold Chinese).", rich_help_panel=BRIEF)] = None,
    length: Annotated[Optional[int], typer.Option(help="Target length in words (characters for zh).", rich_help_panel=BRIEF)] = None,
    n: Annotated[int, typer.Option("--n", help="Candidates to generate and rank.", rich_help_panel=BRIEF)] = 5,
    platform: Annotated[Optional[str], typer.Option(help="social-post only: x, instagram, linkedin, facebook, weibo, xiaohongshu.", rich_help_panel=BRIEF)] = None,
    source_format: Annotated[str, typer.Option(help="Compact source for builtin models: auto, e2e or advertisegen.", rich_help_panel=BRIEF)] = "auto",
    model: Annotated[Optional[str], typer.Option(help="Model directory or bundled model name (default: the task's bundled model).")] = None,
    input_path: Annotated[Optional[Path], typer.Option("--input", help="JSON Lines of requests: {\"id\", \"attributes\", \"keywords\", ...}.")] = None,
    output_path: Annotated[Optional[Path], typer.Option("--output", help="Where --input results go: each line plus \"text\" and \"candidates\".")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    num_beams: Annotated[Optional[int], typer.Option(help="> 1 uses beam search (returns the n best beams).", rich_help_panel=SAMPLING)] = None,
    temperature: Annotated[Optional[float], typer.Option(help="0 = greedy.", rich_help_panel=SAMPLING)] = None,
    top_p: Annotated[Optional[float], typer.Option(help="In (0, 1]; 1 = off.", rich_help_panel=SAMPLING)] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most new tokens per candidate.", rich_help_panel=SAMPLING)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Same seed, same candidates.", rich_help_panel=SAMPLING)] = None,
) -> None:
    """Write content for TASK: generate --n candidates, check the constraints, rank them and explain the ranking.

    One request from the flags, or a batch with --input/--output (flags are defaults for the lines).
    """
    task_spec = get_task(task)
    brief = {"attributes": attributes, "audience": audience, "tone": tone, "keywords": keywords, "forbid": forbid,
             "language": language, "length": length, "n": n, "platform": platform, "source_format": source_format}
    if input_path is None:
        if output_path is not None:
            raise AigcError("--output goes with --input FILE.jsonl; drop it or add --input", param="output")
        request = make_request(task, **brief)
        task_spec.validate(request)
        pipeline = _pipeline(model or task_spec.default_model(request.language), device)
        result = pipeline.run(request, _params(pipeline, num_beams, temperature, top_p, max_tokens, seed))
        if as_json:
            print(json.dumps(result.to_dict(), ensure_ascii=False))
        else:
            _print_result(result)
        return
    if output_path is None:
        raise AigcError("--input needs --output FILE.jsonl for the results", param="output")
    rows, requests = [], []
    for line_number, row in read_jsonl(input_path):
        try:
            request = request_from_json(task, row, brief)
            task_spec.validate(request)
        except AigcError as error:
            raise AigcError(f"{input_path}:{line_number}: {error}", param=error.param) from None
        rows.append(row)
        requests.append(request)
    if not rows:
        raise AigcError(f"{input_path} has no JSON lines; add one request object per line")
    if model is None:
        languages = sorted({request.language for request in requests})
        if len(languages) > 1:
            raise AigcError(f"the lines mix languages ({', '.join(languages)}) and no bundled model writes both; "
                            "pass --model DIR", param="model")
        model = task_spec.default_model(languages[0])
    pipeline = _pipeline(model, device)
    params = _params(pipeline, num_beams, temperature, top_p, max_tokens, seed)
    written, flagged = write_batch(pipeline, rows, requests, params, output_path)
    note = f" ({flagged} whose best candidate breaks a constraint)" if flagged else ""
    console.print(f"wrote {written} results to {output_path}{note}")


def write_batch(
    pipeline: ContentPipeline, rows: list[dict[str, Any]], requests: list[ContentRequest], params: SamplingParams, output_path: Path,
) -> tuple[int, int]:
    """Run every request and write its input line plus ``"text"`` (the best) and ``"candidates"`` (all, ranked).

    Returns:
        ``(lines written, lines whose best candidate breaks a hard constraint)``.
    """
    outputs, flagged = [], 0
    progress = Progress(TextColumn("writing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, transient=True)
    with progress:
        job = progress.add_task("write", total=len(rows))
        for row, request in zip(rows, requests):
            result = pipeline.run(request, params)
            flagged += not result.best.acceptable
            outputs.append({**row, "text": result.best.text,
                            "candidates": [candidate.to_dict() for candidate in result.candidates]})
            progress.advance(job)
    write_jsonl(output_path, outputs)
    return len(outputs), flagged


def _pipeline(model: str, device: str) -> ContentPipeline:
    return ContentPipeline(BuiltinBackend.from_directory(resolve_model(model), device=device))


def _params(pipeline: ContentPipeline, num_beams: int | None, temperature: float | None, top_p: float | None,
            max_tokens: int | None, seed: int | None) -> SamplingParams:
    backend = pipeline.backend
    assert isinstance(backend, BuiltinBackend)  # the CLI builds builtin backends only
    overrides = {"num_beams": num_beams, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": seed}
    return backend.default_params().replace(**{key: value for key, value in overrides.items() if value is not None})


def _score_card(scores: dict[str, float]) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    for name, value in scores.items():
        table.add_row(Text(name, style="dim"), f"{value:.2f}")
    return table


def _print_result(result: ContentResult) -> None:
    console.print(Text(f"{result.request.task} · {result.model} · {len(result.candidates)} candidates · "
                       f"{result.timing['total']:.2f} s", style="dim"))
    for candidate in result.candidates:
        status = Text("meets every constraint", style="green") if candidate.acceptable else Text(
            "breaks: " + "; ".join(candidate.violations), style="red")
        body = Group(Text(candidate.text or "(empty)"), Text(""), status, _score_card(candidate.scores),
                     Text(candidate.explanation, style="dim italic"))
        console.print(Panel(body, title=f"#{candidate.rank}  score {candidate.total:.2f}", title_align="left",
                            border_style="green" if candidate.acceptable else "red"))
    for note in result.notes:
        console.print(Text(f"note: {note}", style="yellow"))
