"""Evaluate a file of generated texts and write the results as JSON and a self-contained HTML report.

:func:`evaluate_jsonl` reads JSON Lines of ``{"id", "text", optional "attributes" (or "mr"), "keywords",
"forbid", "references", "language"}`` (what ``aigc write --output`` writes), runs every registered metric that
applies to each line, adds corpus-level scores (BLEU, chrF, ROUGE-L and the official E2E BLEU when there are
references; distinct-1/2; the pooled slot error rate) and per-slot error counts. References come from the line
itself or, with an E2E-style CSV (``mr``, ``ref``), from the CSV rows whose MR has the line's attributes.

:func:`render_html` draws the report as one HTML file: inline CSS and PNG plots (metric histograms, per-slot
error bars) embedded as base64, so it can be mailed or archived alone. The plots use a bare matplotlib
``Figure`` on the Agg canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import font_manager, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aigc_studio.content.attributes import parse_attributes
from aigc_studio.content.requests import parse_terms
from aigc_studio.errors import AigcError
from aigc_studio.evaluation import diversity, reference
from aigc_studio.evaluation.fidelity import SlotError, slot_errors
from aigc_studio.evaluation.metrics import METRICS, EvalContext
from aigc_studio.evaluation.originality import NgramIndex
from aigc_studio.evaluation.text import has_cjk
from aigc_studio.fileio import atomic_write, atomic_write_json, read_jsonl

# Lines shown in the report's "most slot errors" table, and slots drawn in the per-slot chart.
WORST_LINES_SHOWN = 10
SLOTS_PLOTTED = 30
# Fonts with Chinese glyphs, tried in order for plot labels (AdvertiseGen slot names are Chinese); matplotlib's
# default, DejaVu Sans, has none.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "Microsoft YaHei", "SimHei", "PingFang SC", "Heiti SC")


@dataclass
class MetricSummary:
    """Distribution of one per-candidate metric over the lines it applied to."""

    name: str
    direction: str
    count: int
    mean: float
    std: float
    min: float
    median: float
    max: float


@dataclass
class SlotStats:
    """How often one attribute key was rendered wrongly (a key counts as wrong when any of its values is)."""

    slot: str
    count: int = 0
    missing: int = 0
    contradicted: int = 0

    @property
    def error_rate(self) -> float:
        """Wrong renderings / occurrences."""
        return (self.missing + self.contradicted) / self.count if self.count else 0.0


@dataclass
class LineResult:
    """The scores of one line of the input."""

    line: int
    id: Any
    text: str
    language: str
    scores: dict[str, float]
    slot_errors: list[str] = field(default_factory=list)


@dataclass
class EvalReport:
    """Everything ``aigc eval`` measured.

    Attributes:
        inputs: the files used (``hyp``, ``ref``, ``train_index``; None when not given).
        lines: per-line scores, in file order.
        metrics: per-metric distributions over the lines.
        corpus: corpus-level scores (see the module docstring).
        slots: per-slot error counts, by key.
        notes: what could not be computed and why.
    """

    inputs: dict[str, str | None]
    lines: list[LineResult]
    metrics: dict[str, MetricSummary]
    corpus: dict[str, float]
    slots: dict[str, SlotStats]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (what ``--json-out`` holds)."""
        return {
            "inputs": self.inputs,
            "num_lines": len(self.lines),
            "corpus": self.corpus,
            "metrics": {name: asdict(summary) for name, summary in self.metrics.items()},
            "slots": {name: {**asdict(stats), "error_rate": stats.error_rate} for name, stats in self.slots.items()},
            "notes": self.notes,
            "lines": [asdict(line) for line in self.lines],
        }


@dataclass
class _Line:
    number: int
    id: Any
    text: str
    attributes: dict[str, str]
    keywords: tuple[str, ...]
    forbidden: tuple[str, ...]
    references: list[str]
    language: str


def _references(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item.strip() for item in items):
        raise AigcError(f'{where}: "references" must be a string or a list of non-empty strings')
    return list(items)


def _read_line(number: int, row: Mapping[str, Any], path: Path) -> _Line:
    where = f"{path}:{number}"
    text = row.get("text")
    if not isinstance(text, str):
        raise AigcError(f'{where}: needs a "text" string (the generated text to evaluate)')
    try:
        raw_attributes = row.get("attributes", row.get("mr"))
        attributes = parse_attributes(raw_attributes) if raw_attributes not in (None, "", {}) else {}
        keywords = parse_terms(row.get("keywords") or None, "keywords")
        forbidden = parse_terms(row.get("forbid", row.get("forbidden_words")) or None, "forbid")
    except AigcError as error:
        raise AigcError(f"{where}: {error}", param=error.param) from None
    language = row.get("language") or ("zh" if has_cjk(text) or any(map(has_cjk, attributes.values())) else "en")
    if language not in ("en", "zh"):
        raise AigcError(f'{where}: unknown language {language!r}; use "en" or "zh"', param="language")
    return _Line(number, row.get("id", number), text, attributes, keywords, forbidden,
                 _references(row.get("references"), where), language)


def _attach_csv_references(lines: list[_Line], references_csv: Path, hyp_path: Path) -> None:
    """Give every line without references of its own the CSV's references for its attributes."""
    mrs, references_per_mr = reference.load_e2e_references(references_csv)
    # Attribute order differs between files (and MRs are unordered sets), so match on the set of pairs.
    by_attributes = {frozenset(parse_attributes(mr).items()): refs for mr, refs in zip(mrs, references_per_mr)}
    for line in lines:
        if line.references:
            continue
        if not line.attributes:
            raise AigcError(f'{hyp_path}:{line.number}: no "attributes" (or "mr") to find its references in '
                            f"{references_csv}; add them or drop --ref")
        found = by_attributes.get(frozenset(line.attributes.items()))
        if found is None:
            raise AigcError(f"{hyp_path}:{line.number}: its attributes are not an MR of {references_csv}; "
                            "check that --ref is the reference file of these outputs")
        line.references = list(found)


def _count_slots(slots: dict[str, SlotStats], attributes: Mapping[str, str], errors: list[SlotError]) -> None:
    """Add one line's attributes to the per-slot counts; a key's first error decides its kind."""
    kinds: dict[str, str] = {}
    for error in errors:
        kinds.setdefault(error.slot, error.kind)
    for key in attributes:
        stats = slots.setdefault(key, SlotStats(key))
        stats.count += 1
        if kinds.get(key) == "missing":
            stats.missing += 1
        elif kinds.get(key) == "contradicted":
            stats.contradicted += 1


def _summarise(name: str, values: list[float]) -> MetricSummary:
    array = np.asarray(values, dtype=float)
    return MetricSummary(
        name=name, direction=METRICS[name].direction, count=len(values), mean=float(array.mean()),
        std=float(array.std()), min=float(array.min()), median=float(np.median(array)), max=float(array.max()),
    )


def _corpus_scores(lines: list[_Line], from_csv: bool, notes: list[str]) -> dict[str, float]:
    texts = [line.text for line in lines]
    corpus = {"distinct_1": diversity.distinct_n(texts, 1), "distinct_2": diversity.distinct_n(texts, 2)}
    with_refs = [line for line in lines if line.references]
    if with_refs:
        hypotheses, references = [line.text for line in with_refs], [line.references for line in with_refs]
        tokenize = "zh" if any(line.language == "zh" for line in with_refs) else "13a"
        corpus["bleu"] = reference.corpus_bleu(hypotheses, references, tokenize=tokenize)
        corpus["chrf"] = reference.corpus_chrf(hypotheses, references)
        corpus["rouge_l"] = reference.corpus_rouge_l(hypotheses, references)
        if from_csv:
            corpus["e2e_bleu"] = reference.e2e_bleu(hypotheses, references)
        if len(with_refs) < len(lines):
            notes.append(f"reference scores cover the {len(with_refs)} of {len(lines)} lines that have references")
    else:
        notes.append("no references: BLEU, chrF and ROUGE-L left out (give --ref or \"references\" per line)")
    return corpus


def evaluate_jsonl(
    hyp_path: str | Path,
    *,
    references_csv: str | Path | None = None,
    train_index: str | Path | None = None,
) -> EvalReport:
    """Score every line of a JSON Lines file of generated texts.

    Args:
        hyp_path: lines ``{"id", "text", optional "attributes"/"mr", "keywords", "forbid", "references",
            "language"}``; the language defaults to ``zh`` when the text or attributes hold Chinese.
        references_csv: an E2E-style CSV (``mr``, ``ref``); lines without their own references get the
            references of the MR with the same attributes.
        train_index: a directory written by ``aigc eval index`` (:class:`NgramIndex`), for originality.

    Returns:
        The report.

    Raises:
        AigcError: a missing or empty file, a line without "text", malformed fields (named with file and
            line), or a line whose attributes are not in ``references_csv``.
    """
    hyp_path = Path(hyp_path)
    lines = [_read_line(number, row, hyp_path) for number, row in read_jsonl(hyp_path)]
    if not lines:
        raise AigcError(f"{hyp_path} has no lines; it needs one JSON object with a \"text\" per line")
    if references_csv is not None:
        _attach_csv_references(lines, Path(references_csv), hyp_path)
    index = NgramIndex.load(train_index) if train_index is not None else None
    notes: list[str] = []
    results: list[LineResult] = []
    values: dict[str, list[float]] = {}
    slots: dict[str, SlotStats] = {}
    for line in lines:
        context = EvalContext(
            attributes=line.attributes, references=line.references, keywords=line.keywords,
            forbidden_words=line.forbidden, language=line.language, ngram_index=index,  # type: ignore[arg-type]
        )
        scores = {name: metric(line.text, context) for name, metric in METRICS.items() if metric.applies_to(context)}
        for name, value in scores.items():
            values.setdefault(name, []).append(value)
        errors = slot_errors(line.text, line.attributes) if line.attributes else []
        _count_slots(slots, line.attributes, errors)
        results.append(LineResult(line.number, line.id, line.text, line.language, scores,
                                  [f"{error.kind} {error.slot}[{error.value}]" for error in errors]))
    corpus = _corpus_scores(lines, references_csv is not None, notes)
    total_values = sum(len(line.attributes) for line in lines)
    if total_values:
        corpus["slot_error_rate_pooled"] = sum(stats.missing + stats.contradicted for stats in slots.values()) / total_values
    if index is None:
        notes.append("no --train-index: originality (copied n-grams) left out")
    return EvalReport(
        inputs={"hyp": str(hyp_path), "ref": None if references_csv is None else str(references_csv),
                "train_index": None if train_index is None else str(train_index)},
        lines=results,
        metrics={name: _summarise(name, metric_values) for name, metric_values in values.items()},
        corpus=corpus,
        slots=dict(sorted(slots.items(), key=lambda item: -item[1].count)),
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------------- plots


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The first installed font of :data:`CJK_FONTS`, or None."""
    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


@contextmanager
def _plot_fonts() -> Iterator[None]:
    """Draw with a Chinese-capable font first when one is installed; without one, Chinese labels show as boxes
    (the report says so) and matplotlib's per-glyph warnings are silenced."""
    font = cjk_font()
    families = {"font.family": "sans-serif", "font.sans-serif": [font, "DejaVu Sans"]} if font else {}
    with rc_context(families), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        yield


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def metric_histograms_png(report: EvalReport) -> str | None:
    """A grid of histograms, one per metric, as base64 PNG; None when no metric was computed."""
    names = [name for name, summary in report.metrics.items() if summary.count]
    if not names:
        return None
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    with _plot_fonts():
        figure = Figure(figsize=(4 * columns, 2.8 * rows), dpi=100)
        FigureCanvasAgg(figure)
        for position, name in enumerate(names, start=1):
            axes = figure.add_subplot(rows, columns, position)
            axes.hist([line.scores[name] for line in report.lines if name in line.scores], bins=20, color="#4c72b0")
            arrow = "higher is better" if report.metrics[name].direction == "higher" else "lower is better"
            axes.set_title(f"{name} ({arrow})", fontsize=9)
            axes.tick_params(labelsize=8)
            axes.grid(True, alpha=0.3)
        return _png(figure)


def slot_errors_png(report: EvalReport) -> str | None:
    """Horizontal stacked bars of missing and contradicted rates per slot, as base64 PNG; None without slots."""
    slots = list(report.slots.values())[:SLOTS_PLOTTED]
    if not slots:
        return None
    labels = [stats.slot for stats in slots]
    missing = [stats.missing / stats.count for stats in slots]
    contradicted = [stats.contradicted / stats.count for stats in slots]
    with _plot_fonts():
        figure = Figure(figsize=(7, 0.6 + 0.35 * len(slots)), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.barh(labels, missing, color="#dd8452", label="missing")
        axes.barh(labels, contradicted, left=missing, color="#c44e52", label="contradicted")
        axes.invert_yaxis()  # most frequent slot on top
        axes.set_xlabel("share of lines with the slot rendered wrongly")
        axes.set_xlim(0, 1)
        axes.legend(loc="lower right", fontsize=8)
        axes.grid(True, axis="x", alpha=0.3)
        return _png(figure)


# ---------------------------------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; max-width: 640px; }
.muted { color: #666; font-size: 0.85rem; } img { max-width: 100%; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[Any]], text_columns: frozenset[int] = frozenset()) -> str:
    def cells(values: list[Any], tag: str) -> str:
        return "".join(f'<{tag}{" class=text" if i in text_columns else ""}>{_cell(v)}</{tag}>' for i, v in enumerate(values))

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    return f"<table><thead><tr>{cells(headers, 'th')}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: EvalReport, title: str = "AIGC Studio evaluation report") -> str:
    """The report as one self-contained HTML page (inline CSS, base64 PNG plots).

    Args:
        report: from :func:`evaluate_jsonl`.
        title: the page title.

    Returns:
        The HTML text.
    """
    sections = [f"<h1>{html.escape(title)}</h1>"]
    inputs = ", ".join(f"{name}: {html.escape(value)}" for name, value in report.inputs.items() if value)
    sections.append(f'<p class="muted">{len(report.lines)} lines &middot; {inputs}</p>')
    if report.notes:
        sections.append("<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in report.notes) + "</ul>")
    sections.append("<h2>Corpus scores</h2>")
    sections.append(_table(["score", "value"], [[name, value] for name, value in report.corpus.items()], frozenset({0})))
    sections.append("<h2>Per-text metrics</h2>")
    rows = [[s.name, "↑" if s.direction == "higher" else "↓", s.count, s.mean, s.std, s.min, s.median, s.max]
            for s in report.metrics.values()]
    sections.append(_table(["metric", "better", "lines", "mean", "std", "min", "median", "max"], rows, frozenset({0})))
    histograms = metric_histograms_png(report)
    if histograms:
        sections.append(f'<img alt="metric histograms" src="data:image/png;base64,{histograms}">')
    if report.slots:
        sections.append("<h2>Slot errors</h2>")
        slot_rows = [[s.slot, s.count, s.missing, s.contradicted, s.error_rate] for s in report.slots.values()]
        sections.append(_table(["slot", "lines", "missing", "contradicted", "error rate"], slot_rows, frozenset({0})))
        bars = slot_errors_png(report)
        if bars:
            sections.append(f'<img alt="slot error rates" src="data:image/png;base64,{bars}">')
            if cjk_font() is None and any(has_cjk(slot) for slot in report.slots):
                sections.append('<p class="muted">No Chinese font is installed, so Chinese slot names show as boxes '
                                "in the chart; the table above has them (install e.g. Noto Sans CJK SC).</p>")
        worst = sorted((line for line in report.lines if line.slot_errors), key=lambda line: -len(line.slot_errors))
        if worst:
            sections.append(f"<h2>Most slot errors (top {min(WORST_LINES_SHOWN, len(worst))})</h2>")
            worst_rows = [[line.id, line.text, "; ".join(line.slot_errors)] for line in worst[:WORST_LINES_SHOWN]]
            sections.append(_table(["id", "text", "errors"], worst_rows, frozenset({1, 2})))
    body = "\n".join(sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def write_report(report: EvalReport, *, html_path: str | Path | None = None, json_path: str | Path | None = None) -> list[Path]:
    """Atomically write the HTML report and/or the JSON results; returns the paths written.

    Raises:
        AigcError: neither path given.
    """
    if html_path is None and json_path is None:
        raise AigcError("nowhere to write the evaluation; give --report FILE.html and/or --json-out FILE.json", param="report")
    written = []
    if html_path is not None:
        written.append(atomic_write(html_path, render_html(report)))
    if json_path is not None:
        written.append(atomic_write_json(json_path, report.to_dict()))
    return written
