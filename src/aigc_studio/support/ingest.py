"""Turning knowledge files into knowledge-base entries: FAQ tables, Markdown, HTML, plain text and PDF.

::

    entries = load_entries("faq.csv")          # one entry per row: question, answer, optional intent and tags
    entries = load_entries("guide.md")         # chunks by headings, then by length with overlap

Every entry gets

* a **stable id** that depends on where the text sits, not on what it says (the file name plus the FAQ
  question, the row's own ``id`` column when there is one, or the heading path and chunk number of a
  document), so that editing an answer keeps the id and the knowledge base bumps its version instead of
  adding a new entry;
* a **content hash** (sha256 of the entry's fields) that tells whether re-ingesting a file changed it.

Personal data is redacted here, at intake (:func:`aigc_studio.safety.pii.redact`, numbered placeholders such
as ``<EMAIL_1>``), before anything is embedded, indexed or stored: the raw value never reaches the database.
"""

from __future__ import annotations

import csv
import hashlib
import html.parser
import io
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from aigc_studio.errors import AigcError
from aigc_studio.fileio import read_jsonl, require_file
from aigc_studio.safety import pii

EntryKind = Literal["faq", "chunk"]
FAQ_SUFFIXES = (".csv", ".jsonl")
DOCUMENT_SUFFIXES = (".md", ".markdown", ".html", ".htm", ".txt", ".pdf")
SUPPORTED_SUFFIXES = FAQ_SUFFIXES + DOCUMENT_SUFFIXES
# Column names accepted for FAQ files, first match wins (case-insensitive).
QUESTION_COLUMNS = ("question", "q", "title")
ANSWER_COLUMNS = ("answer", "a", "text", "content")


@dataclass(frozen=True)
class ChunkingConfig:
    """How documents are cut: first at headings, then sections longer than ``max_chars`` into windows.

    Windows end at a sentence or word boundary where one lies in the last third of the window, and the next
    window starts ``overlap_chars`` before the previous one ended, so a fact that straddles a cut is whole in
    at least one chunk.
    """

    max_chars: int = 1000
    overlap_chars: int = 150

    def __post_init__(self) -> None:
        if self.max_chars < 100:
            raise AigcError(f"max_chars must be at least 100, got {self.max_chars}", param="max_chars")
        if not 0 <= self.overlap_chars < self.max_chars // 2:
            raise AigcError(
                f"overlap_chars must be between 0 and max_chars/2 ({self.max_chars // 2}), got {self.overlap_chars}",
                param="overlap_chars",
            )


@dataclass(frozen=True)
class EntryDraft:
    """One knowledge-base entry read from a file, already redacted, before it is stored.

    ``title`` is the FAQ question or the document's heading path (``"Cards > Lost card"``); ``text`` the
    answer or the chunk. ``pii_redacted`` counts the personal-data spans replaced at intake.
    """

    id: str
    source: str
    kind: EntryKind
    title: str
    text: str
    intent: str | None = None
    tags: tuple[str, ...] = ()
    position: int = 0
    pii_redacted: int = 0
    content_hash: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        fields = {"title": self.title, "text": self.text, "intent": self.intent, "tags": list(self.tags)}
        digest = hashlib.sha256(json.dumps(fields, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()
        object.__setattr__(self, "content_hash", digest)

    @property
    def search_text(self) -> str:
        """What retrieval indexes: the question or heading, then the answer or chunk."""
        return f"{self.title}\n{self.text}" if self.title else self.text

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def load_entries(path: str | Path, *, chunking: ChunkingConfig | None = None, source: str | None = None) -> list[EntryDraft]:
    """Read one knowledge file into redacted entries with stable ids.

    Args:
        path: a ``.csv``/``.jsonl`` FAQ (columns ``question``, ``answer``, optional ``intent``, ``tags``
            (``;`` or ``,`` separated, or a JSON list) and ``id``), or a ``.md``, ``.html``, ``.txt`` or
            ``.pdf`` document.
        chunking: how documents are cut (default :class:`ChunkingConfig`).
        source: the name entries are filed under (default: the file name); ids derive from it.

    Returns:
        The entries in file order.

    Raises:
        AigcError: the file is missing, empty, of an unknown kind, lacks the needed columns, or is not a
            readable PDF; the message names the file and the fix.
    """
    path = require_file(path, "knowledge file")
    source = source or path.name
    suffix = path.suffix.lower()
    chunking = chunking or ChunkingConfig()
    if suffix not in SUPPORTED_SUFFIXES:
        raise AigcError(f"cannot ingest {path}: unknown file kind {suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise AigcError(f"{path} is empty; give a file with at least one question and answer or some text")
    if suffix == ".csv":
        entries = _faq_entries(_csv_rows(path), path, source)
    elif suffix == ".jsonl":
        entries = _faq_entries(((line, row) for line, row in read_jsonl(path)), path, source)
    elif suffix == ".pdf":
        entries = _document_entries(_pdf_sections(path), source, chunking)
    else:
        text = _read_text(path)
        if suffix in (".html", ".htm"):
            sections = _html_sections(text)
        elif suffix == ".txt":
            sections = [_Section([], text)]  # plain text has no headings: cut by length only
        else:
            sections = _markdown_sections(text)
        entries = _document_entries(sections, source, chunking)
    if not entries:
        raise AigcError(f"{path} holds no text to ingest; check that it is not blank (a scanned PDF needs OCR first)")
    return entries


def stable_id(*parts: str) -> str:
    """A short id that depends only on ``parts`` (16 hex digits of their sha256)."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def redact_text(text: str) -> tuple[str, int]:
    """``text`` with its personal data replaced by numbered placeholders, and how many spans were replaced."""
    entities = pii.detect(text)
    return (pii.redact(text, "placeholder", entities=entities), len(entities)) if entities else (text, 0)


# ----------------------------------------------------------------------------------------------------------
# FAQ tables


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise AigcError(f"{path} is not valid UTF-8 (byte {error.start}); re-save it as UTF-8") from None


def _csv_rows(path: Path) -> Iterable[tuple[int, dict[str, object]]]:
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    if not reader.fieldnames:
        raise AigcError(f"{path} has no header row; the first line must name the columns (question,answer,...)")
    for number, row in enumerate(reader, start=2):
        yield number, {key.strip().lower(): value for key, value in row.items() if key is not None}


def _pick(row: dict[str, object], names: tuple[str, ...]) -> str | None:
    lowered = {str(key).strip().lower(): value for key, value in row.items()}
    for name in names:
        if name in lowered and lowered[name] is not None:
            return str(lowered[name]).strip()
    return None


def _tags(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, list):
        items = value
    else:
        text = str(value).strip()
        items = json.loads(text) if text.startswith("[") else re.split(r"[;,]", text)
    return tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))


def _faq_entries(rows: Iterable[tuple[int, dict[str, object]]], path: Path, source: str) -> list[EntryDraft]:
    entries: list[EntryDraft] = []
    seen: dict[str, int] = {}
    for position, (line, row) in enumerate(rows):
        question, answer = _pick(row, QUESTION_COLUMNS), _pick(row, ANSWER_COLUMNS)
        if question is None or answer is None:
            raise AigcError(
                f"{path}:{line}: an FAQ needs a 'question' and an 'answer' column; found {', '.join(map(str, row)) or 'none'}"
            )
        if not question and not answer:
            continue  # a blank row
        if not answer:
            raise AigcError(f"{path}:{line}: the answer is empty; write an answer or remove the row")
        own_id = _pick(row, ("id",))
        # The key is the row's own id, else its question as written before redaction (so a redaction rule
        # that changes later does not change ids).
        key = own_id or re.sub(r"\s+", " ", question.lower())
        entry_id = stable_id(source, "faq", key)
        if entry_id in seen:
            raise AigcError(f"{path}:{line}: the same question (or id) as line {seen[entry_id]}; merge the two rows")
        seen[entry_id] = line
        clean_question, found_q = redact_text(question)
        clean_answer, found_a = redact_text(answer)
        intent = _pick(row, ("intent",)) or None
        entries.append(
            EntryDraft(
                id=entry_id, source=source, kind="faq", title=clean_question, text=clean_answer, intent=intent,
                tags=_tags(row.get("tags")), position=position, pii_redacted=found_q + found_a,
            )
        )
    return entries


# ----------------------------------------------------------------------------------------------------------
# documents: sections by heading, then chunks by length


@dataclass
class _Section:
    headings: list[str]
    text: str


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _markdown_sections(text: str) -> list[_Section]:
    """Split Markdown (or plain text, which has no headings) at ATX headings, keeping the heading path."""
    sections: list[_Section] = []
    path: list[str] = []
    lines: list[str] = []
    in_code = False

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append(_Section(list(path), body))
        lines.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        match = None if in_code else _MD_HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            del path[level - 1 :]
            path.extend([""] * (level - 1 - len(path)))
            path.append(match.group(2))
        else:
            lines.append(line)
    flush()
    for section in sections:
        section.headings = [heading for heading in section.headings if heading]
    return sections


class _HtmlText(html.parser.HTMLParser):
    """Visible text of an HTML page, cut into sections at ``<h1>``..``<h6>``."""

    _SKIP = {"script", "style", "noscript", "template", "head"}
    _BLOCK = {"p", "div", "li", "br", "tr", "section", "article", "table", "ul", "ol", "blockquote", "pre", "dd", "dt"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[_Section] = []
        self._path: list[str] = []
        self._parts: list[str] = []
        self._heading: list[str] | None = None
        self._heading_level = 0
        self._skip_depth = 0

    def _flush(self) -> None:
        body = re.sub(r"[ \t]+", " ", "".join(self._parts))
        body = re.sub(r"\s*\n\s*", "\n", body).strip()
        if body:
            self.sections.append(_Section([h for h in self._path if h], body))
        self._parts = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading, self._heading_level = [], int(tag[1])
        elif tag in self._BLOCK:
            self._parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            level = self._heading_level
            del self._path[level - 1 :]
            self._path.extend([""] * (level - 1 - len(self._path)))
            self._path.append(re.sub(r"\s+", " ", "".join(self._heading)).strip())
            self._heading = None
        elif tag in self._BLOCK:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        (self._heading if self._heading is not None else self._parts).append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def _html_sections(text: str) -> list[_Section]:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    return parser.sections


def _pdf_sections(path: Path) -> list[_Section]:
    """One section per PDF page (``"page 3"``), text as pypdf extracts it."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise AigcError(f"{path} is encrypted; save an unencrypted copy and ingest that")
        pages = [page.extract_text() or "" for page in reader.pages]
    except AigcError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as error:
        raise AigcError(f"{path} is not a readable PDF ({error.__class__.__name__}: {error}); re-export it as PDF") from None
    return [_Section([f"page {number}"], text.strip()) for number, text in enumerate(pages, start=1) if text.strip()]


def chunk_text(text: str, config: ChunkingConfig) -> list[str]:
    """Cut ``text`` into windows of at most ``config.max_chars`` characters, overlapping by ``overlap_chars``."""
    text = text.strip()
    if len(text) <= config.max_chars:
        return [text] if text else []
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + config.max_chars, len(text))
        if end < len(text):
            end = _boundary(text, start + (2 * config.max_chars) // 3, end)
        chunks.append(text[start:end].strip())
        if end >= len(text):
            break
        start = max(end - config.overlap_chars, start + 1)
        # begin the overlap at a word start rather than mid-word
        space = text.find(" ", start, end)
        if 0 <= space < end - 1 and space - start < config.overlap_chars // 2:
            start = space + 1
    return [chunk for chunk in chunks if chunk]


_SENTENCE_END = re.compile(r"[.!?。！？\n]\s*")


def _boundary(text: str, lo: int, hi: int) -> int:
    """The last sentence end in ``text[lo:hi]``, else the last space, else ``hi`` (CJK text has no spaces)."""
    last = None
    for match in _SENTENCE_END.finditer(text, lo, hi):
        last = match.end()
    if last is not None:
        return last
    space = text.rfind(" ", lo, hi)
    return space + 1 if space > 0 else hi


def _document_entries(sections: list[_Section], source: str, chunking: ChunkingConfig) -> list[EntryDraft]:
    entries: list[EntryDraft] = []
    occurrences: dict[str, int] = {}
    for section in sections:
        title = " > ".join(section.headings)
        # Two sections can share a heading path; number them so ids stay distinct and stable.
        occurrence = occurrences.get(title, 0)
        occurrences[title] = occurrence + 1
        for number, chunk in enumerate(chunk_text(section.text, chunking)):
            clean_title, found_title = redact_text(title)
            clean_chunk, found_chunk = redact_text(chunk)
            entries.append(
                EntryDraft(
                    id=stable_id(source, "chunk", title, str(occurrence), str(number)),
                    source=source, kind="chunk", title=clean_title, text=clean_chunk,
                    position=len(entries), pii_redacted=found_title + found_chunk,
                )
            )
    return entries
