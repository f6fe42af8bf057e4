"""The content library: generated texts a user kept, edited, tagged, searched and exported.

::

    library = ContentLibrary(db)
    item = library.save(NewContentItem(task="ad-copy", text="The Eagle is a riverside pub.", tags=["pubs"]))
    library.update(item.id, text="The Eagle: a riverside pub.", tags=["pubs", "summer"])
    library.search("riverside", tag="summer")             # case-insensitive substring search, any language
    library.export(library.search(None), "markdown")

Search is ``LIKE`` on the title and the text (every whitespace-separated term must appear), the same on
SQLite and PostgreSQL and for Chinese as for English; it is meant for a team's library (thousands of items),
not a search engine.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Select, func, select

from aigc_studio.errors import AigcError
from aigc_studio.store.db import Database
from aigc_studio.store.models import ContentItem, ContentTag, utc_now

if TYPE_CHECKING:
    from aigc_studio.content.pipeline import ContentResult

EXPORT_FORMATS: tuple[str, ...] = ("csv", "json", "markdown")
MAX_TITLE_LENGTH = 200
MAX_TAG_LENGTH = 64
MAX_TAGS = 20
MAX_PAGE = 500
_DEFAULT_TITLE_LENGTH = 60
# Spreadsheets run a cell that starts with one of these as a formula; the CSV export defuses them.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ContentNotFoundError(AigcError):
    """No library item has the id asked for (the server answers 404)."""


@dataclass
class NewContentItem:
    """A text to keep in the library.

    Attributes:
        task: the task that wrote it (``ad-copy``, ...).
        text: the content.
        title: a short title; None uses the start of the text.
        request: the request that produced it (JSON-ready), for "write more like this".
        scores: its score card (JSON-ready).
        tags: labels to find it by.
        language: ``"en"``, ``"zh"``, ... or None.
        audit_record_id: the audit record of the generation, when it came from one.
    """

    task: str
    text: str
    title: str | None = None
    request: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    tags: Sequence[str] = ()
    language: str | None = None
    audit_record_id: int | None = None

    @classmethod
    def from_result(cls, result: ContentResult, *, candidate: int = 0, tags: Sequence[str] = (),
                    audit_record_id: int | None = None) -> NewContentItem:
        """The ``candidate``-th ranked candidate of a content pipeline result (0: the best)."""
        if not 0 <= candidate < len(result.candidates):
            raise AigcError(f"candidate {candidate} does not exist; the result has {len(result.candidates)}", param="candidate")
        chosen = result.candidates[candidate]
        return cls(
            task=result.request.task, text=chosen.text, request=result.request.to_dict(),
            scores={"total": chosen.total, "scores": chosen.scores, "violations": chosen.violations},
            tags=tags, language=result.request.language, audit_record_id=audit_record_id,
        )


@dataclass(frozen=True)
class ContentItemInfo:
    """A stored library item."""

    id: str
    created_at: datetime
    updated_at: datetime
    task: str
    title: str
    text: str
    request: dict[str, Any] | None
    scores: dict[str, Any] | None
    tags: list[str] = field(default_factory=list)
    language: str | None = None
    audit_record_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times as ISO strings)."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return data


class ContentLibrary:
    """The content library stored in ``db``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, item: NewContentItem | Mapping[str, Any]) -> ContentItemInfo:
        """Store a new item and return it with its id (a UUID) and times.

        Raises:
            AigcError: unknown fields (for a mapping), an empty task or text, a title over 200 characters,
                or bad tags (empty, over 64 characters, more than 20).
        """
        item = _as_new_item(item)
        task = _required_text(item.task, "task")
        text = _required_text(item.text, "text")
        now = utc_now()
        row = ContentItem(
            id=str(uuid.uuid4()), created_at=now, updated_at=now, task=task,
            title=_title(item.title, text), text=text, request=item.request, scores=item.scores,
            language=item.language, audit_record_id=item.audit_record_id,
        )
        row.tags = _tag_rows(_clean_tags(item.tags))
        with self.db.session(write=True) as session:
            session.add(row)
            session.flush()
            return _info(row)

    def get(self, item_id: str) -> ContentItemInfo:
        """The item with this id.

        Raises:
            ContentNotFoundError: there is none.
        """
        with self.db.session() as session:
            return _info(_get_row(session, item_id))

    def update(self, item_id: str, *, text: str | None = None, title: str | None = None,
               tags: Sequence[str] | None = None) -> ContentItemInfo:
        """Change an item's text, title or tags (None leaves a field as it is) and return it.

        Raises:
            ContentNotFoundError: no item has this id.
            AigcError: an empty text, a bad title or bad tags.
        """
        with self.db.session(write=True) as session:
            row = _get_row(session, item_id)
            if text is not None:
                row.text = _required_text(text, "text")
            if title is not None:
                row.title = _title(title, row.text)
            if tags is not None:
                cleaned = _clean_tags(tags)
                row.tags.clear()
                session.flush()  # delete the old tag rows before inserting ones with the same keys
                row.tags.extend(_tag_rows(cleaned))
            row.updated_at = utc_now()
            session.flush()
            return _info(row)

    def delete(self, item_id: str) -> None:
        """Remove an item and its tags.

        Raises:
            ContentNotFoundError: no item has this id.
        """
        with self.db.session(write=True) as session:
            session.delete(_get_row(session, item_id))

    def search(self, query: str | None = None, *, tag: str | None = None, task: str | None = None,
               limit: int = 20, offset: int = 0) -> list[ContentItemInfo]:
        """Items whose title or text contains every term of ``query`` (case-insensitive), newest change first.

        Args:
            query: whitespace-separated terms; None or blank matches everything.
            tag: only items with this tag.
            task: only items of this task.
            limit: at most this many items (1 to 500).
            offset: skip this many first (paging).

        Raises:
            AigcError: ``limit`` or ``offset`` out of range.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise AigcError(f"limit must be between 1 and {MAX_PAGE}, got {limit!r}", param="limit")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise AigcError(f"offset must be 0 or more, got {offset!r}", param="offset")
        statement = _filtered(select(ContentItem), query, tag, task)
        statement = statement.order_by(ContentItem.updated_at.desc(), ContentItem.id).limit(limit).offset(offset)
        with self.db.session() as session:
            return [_info(row) for row in session.scalars(statement)]

    def count(self, query: str | None = None, *, tag: str | None = None, task: str | None = None) -> int:
        """How many items :meth:`search` would find with no limit (for paging)."""
        statement = _filtered(select(func.count()).select_from(ContentItem), query, tag, task)
        with self.db.session() as session:
            return int(session.scalar(statement) or 0)

    @staticmethod
    def export(items: Iterable[ContentItemInfo], format: Literal["csv", "json", "markdown"]) -> str:
        """The items as one document.

        ``csv``: a header and one row per item (tags joined with ``", "``, request and scores as JSON; a cell
        that a spreadsheet would run as a formula gets a leading ``'``). ``json``: a list of the items' fields.
        ``markdown``: a section per item with its task, language, tags and date under the title.

        Raises:
            AigcError: an unknown format.
        """
        items = list(items)
        if format == "json":
            return json.dumps([item.to_dict() for item in items], ensure_ascii=False, indent=2) + "\n"
        if format == "csv":
            buffer = io.StringIO()
            columns = [f.name for f in fields(ContentItemInfo)]
            writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            for item in items:
                writer.writerow({key: _csv_cell(value) for key, value in item.to_dict().items()})
            return buffer.getvalue()
        if format == "markdown":
            sections = [_markdown_section(item) for item in items]
            return "# Content library\n\n" + ("\n---\n\n".join(sections) if sections else "No items.\n")
        raise AigcError(f"unknown export format {format!r}; use one of: {', '.join(EXPORT_FORMATS)}", param="format")


def _filtered(statement: Select[Any], query: str | None, tag: str | None, task: str | None) -> Select[Any]:
    for term in (query or "").split():
        pattern = f"%{_escape_like(term)}%"
        statement = statement.where(
            ContentItem.title.ilike(pattern, escape="\\") | ContentItem.text.ilike(pattern, escape="\\")
        )
    if tag is not None:
        statement = statement.where(
            ContentItem.id.in_(select(ContentTag.item_id).where(ContentTag.tag == tag.strip()))
        )
    if task is not None:
        statement = statement.where(ContentItem.task == task)
    return statement


def _escape_like(term: str) -> str:
    # %, _ and the escape character itself are literal characters to the user
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _as_new_item(item: NewContentItem | Mapping[str, Any]) -> NewContentItem:
    if isinstance(item, NewContentItem):
        return item
    if not isinstance(item, Mapping):
        raise AigcError(f"a library item must be a NewContentItem or a mapping, got {type(item).__name__}")
    known = {f.name for f in fields(NewContentItem)}
    unknown = sorted(set(item) - known)
    if unknown:
        raise AigcError(f"unknown library item field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", param=unknown[0])
    for required in ("task", "text"):
        if required not in item:
            raise AigcError(f"library item needs {required!r}", param=required)
    return NewContentItem(**item)


def _required_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AigcError(f"{name} is empty; give the item's {name}", param=name)
    return value.strip()


def _title(title: str | None, text: str) -> str:
    if title is None or not title.strip():
        first_line = text.strip().splitlines()[0]
        return first_line if len(first_line) <= _DEFAULT_TITLE_LENGTH else first_line[: _DEFAULT_TITLE_LENGTH - 1] + "…"
    title = " ".join(title.split())
    if len(title) > MAX_TITLE_LENGTH:
        raise AigcError(f"title is {len(title)} characters long; use at most {MAX_TITLE_LENGTH}", param="title")
    return title


def _clean_tags(tags: Sequence[str]) -> list[str]:
    if isinstance(tags, str):
        raise AigcError("tags must be a list of strings, not one string", param="tags")
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise AigcError(f"tag {tag!r} is empty or not text; tags are short labels like 'summer'", param="tags")
        tag = " ".join(tag.split())
        if len(tag) > MAX_TAG_LENGTH:
            raise AigcError(f"tag {tag[:20]!r}... is {len(tag)} characters long; use at most {MAX_TAG_LENGTH}", param="tags")
        if tag not in cleaned:
            cleaned.append(tag)
    if len(cleaned) > MAX_TAGS:
        raise AigcError(f"{len(cleaned)} tags given; an item takes at most {MAX_TAGS}", param="tags")
    return cleaned


def _tag_rows(tags: list[str]) -> list[ContentTag]:
    return [ContentTag(tag=tag, position=position) for position, tag in enumerate(tags)]


def _get_row(session: Any, item_id: str) -> ContentItem:
    row = session.get(ContentItem, item_id) if isinstance(item_id, str) else None
    if row is None:
        raise ContentNotFoundError(f"no content item with id {item_id!r}; search the library for its id", param="id")
    return row


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(inner, str) for inner in value):
        value = ", ".join(value)
    elif isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _markdown_section(item: ContentItemInfo) -> str:
    meta = [item.task]
    if item.language:
        meta.append(item.language)
    if item.tags:
        meta.append("tags: " + ", ".join(item.tags))
    meta.append(f"updated {item.updated_at:%Y-%m-%d %H:%M} UTC")
    return f"## {item.title}\n\n*{' · '.join(meta)}*\n\n{item.text}\n"


def _info(row: ContentItem) -> ContentItemInfo:
    return ContentItemInfo(
        id=row.id, created_at=row.created_at, updated_at=row.updated_at, task=row.task, title=row.title,
        text=row.text, request=row.request, scores=row.scores, tags=[tag.tag for tag in row.tags],
        language=row.language, audit_record_id=row.audit_record_id,
    )
