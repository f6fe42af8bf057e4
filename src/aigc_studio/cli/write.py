"""``aigc write TASK``: write marketing content through the content pipeline, one request or a JSON Lines batch.

A batch (``--input big.jsonl --output out.jsonl``) shows its progress, throughput and time left, and resumes
after a crash: finished lines wait in ``out.jsonl.partial`` and a rerun of the same command does only the rest
(:mod:`aigc_studio.content.batch`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from aigc_studio.backends.registry import default_params, load_backend
from aigc_studio.content.batch import BatchReport, run_batch
from aigc_studio.content.governance import Governance
from aigc_studio.content.pipeline import ContentPipeline, ContentResult
from aigc_studio.content.requests import ContentRequest, make_request, request_from_json
from aigc_studio.content.tasks import TASKS, get_task
from aigc_studio.errors import AigcError
from aigc_studio.fileio import read_jsonl, sha256_file
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.settings import load_settings
from aigc_studio.store.db import Database

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
    model: Annotated[Optional[str], typer.Option(help="A \\[models.NAME] of aigc.toml, a model directory or a bundled model name (default: the task's bundled model).")] = None,
    input_path: Annotated[Optional[Path], typer.Option("--input", help="JSON Lines of requests: {\"id\", \"attributes\", \"keywords\", ...}.")] = None,
    output_path: Annotated[Optional[Path], typer.Option("--output", help="Where --input results go: each line plus \"text\" and \"candidates\".")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    governance: Annotated[bool, typer.Option(help="Moderate, watermark, stamp provenance and audit (docs/governance.md); "
                                             "--no-governance writes bare output.")] = True,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: the model's device setting, else cpu).")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="none or int8: int8 weights decode faster on the CPU (default: the model's quantize setting, else none; docs/generation.md).")] = None,
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
        pipeline = _pipeline(model or task_spec.default_model(request.language), device, quantize, governance)
        result = pipeline.run(request, _params(pipeline, num_beams, temperature, top_p, max_tokens, seed))
        if as_json:
            print(json.dumps(result.to_dict(), ensure_ascii=False))
        else:
            _print_result(result)
        return
    if output_path is None:
        raise AigcError("--input needs --output FILE.jsonl for the results", param="output")
    rows, requests, line_numbers = [], [], []
    for line_number, row in read_jsonl(input_path):
        try:
            request = request_from_json(task, row, brief)
            task_spec.validate(request)
        except AigcError as error:
            raise AigcError(f"{input_path}:{line_number}: {error}", param=error.param) from None
        rows.append(row)
        requests.append(request)
        line_numbers.append(line_number)
    if not rows:
        raise AigcError(f"{input_path} has no JSON lines; add one request object per line")
    if model is None:
        languages = sorted({request.language for request in requests})
        if len(languages) > 1:
            raise AigcError(f"the lines mix languages ({', '.join(languages)}) and no bundled model writes both; "
                            "pass --model DIR", param="model")
        model = task_spec.default_model(languages[0])
    pipeline = _pipeline(model, device, quantize, governance)
    params = _params(pipeline, num_beams, temperature, top_p, max_tokens, seed)
    report = write_batch(pipeline, rows, requests, params, output_path, line_numbers=line_numbers,
                         input_sha256=sha256_file(input_path))
    note = f" ({report.flagged} whose best candidate breaks a constraint)" if report.flagged else ""
    resumed = f"; {report.resumed} were done by an earlier, interrupted run" if report.resumed else ""
    console.print(f"wrote {report.total} results to {output_path}{note}{resumed}")


class RateColumn(ProgressColumn):
    """Lines per second over Rich's recent window (the throughput of a batch)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.2f} lines/s" if task.speed else "- lines/s", style="progress.data.speed")


def write_batch(
    pipeline: ContentPipeline, rows: list[dict[str, Any]], requests: list[ContentRequest], params: SamplingParams,
    output_path: Path, *, line_numbers: list[int], input_sha256: str,
) -> BatchReport:
    """Run every request and write its input line plus ``"text"`` (the best) and ``"candidates"`` (all, ranked).

    Lines an interrupted run of the same job finished are not run again (see :mod:`aigc_studio.content.batch`).

    Args:
        line_numbers: each row's line in the input file (what a resumed run matches on).
        input_sha256: the input file's hash: a leftover partial file of another input is refused.
    """
    info = pipeline.backend.info
    fingerprint = {"input_sha256": input_sha256, "task": requests[0].task if requests else None, "model": info.name,
                   "weights_sha256": info.weights_sha256, "params": params.to_dict()}

    def process(index: int) -> tuple[dict[str, Any], bool]:
        result = pipeline.run(requests[index], params)
        output = {**rows[index], "text": result.best.text,
                  "candidates": [candidate.to_dict() for candidate in result.candidates]}
        return output, not result.best.acceptable

    progress = Progress(TextColumn("writing"), BarColumn(), MofNCompleteColumn(), RateColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console, transient=True)
    with progress:
        job = progress.add_task("write", total=len(rows))
        return run_batch(line_numbers, process, output_path, fingerprint=fingerprint,
                         on_start=lambda total, done: progress.update(job, completed=done),
                         on_line=lambda: progress.advance(job))


def _pipeline(model: str, device: str | None, quantize: str | None, governed: bool) -> ContentPipeline:
    backend = load_backend(model, device=device, quantize=quantize)
    if not governed:
        return ContentPipeline(backend)
    settings = load_settings()
    governance = Governance(settings, Database.from_settings(settings))
    return ContentPipeline(backend, hooks=governance.pipeline_hooks(backend))


def _params(pipeline: ContentPipeline, num_beams: int | None, temperature: float | None, top_p: float | None,
            max_tokens: int | None, seed: int | None) -> SamplingParams:
    overrides = {"num_beams": num_beams, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": seed}
    return default_params(pipeline.backend).replace(**{key: value for key, value in overrides.items() if value is not None})


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
        flags = [Text("flagged: " + ", ".join(flag.get("category") or flag.get("type", "") for flag in candidate.flags),
                      style="yellow")] if candidate.flags else []
        body = Group(Text(candidate.text or "(empty)"), Text(""), status, *flags, _score_card(candidate.scores),
                     Text(candidate.explanation, style="dim italic"))
        console.print(Panel(body, title=f"#{candidate.rank}  score {candidate.total:.2f}", title_align="left",
                            border_style="green" if candidate.acceptable else "red"))
    for note in result.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    if result.provenance and result.provenance.get("record_id") is not None:
        console.print(Text(f"audit record {result.provenance['record_id']} · content sha256 "
                           f"{result.provenance['content_sha256'][:16]}…", style="dim"))
