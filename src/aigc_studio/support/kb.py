"""The knowledge base: versioned entries in the database, searchable through a hybrid index on disk.

::

    kb = KnowledgeBase(Database("sqlite:///var/aigc.db"), index_dir="var/support/index")
    report = kb.add_files(["faq.csv", "guide.md"])     # added / updated / unchanged / removed per file
    hits = kb.search("my card has not arrived", k=5)   # KbHit(entry, score, bm25_rank, dense_rank)
    kb.remove("guide.md")                               # a whole file, or one entry by id

The database is the truth; the index is derived from it. After every change the knowledge base brings the
index in line with the ``kb_entries`` table, embedding only entries whose content hash the index has not
seen, so a crash between the two leaves nothing that the next call does not repair.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from aigc_studio.errors import AigcError
from aigc_studio.fileio import sha256_file
from aigc_studio.store.db import Database
from aigc_studio.store.models import utc_now
from aigc_studio.support.embeddings import DEFAULT_EMBEDDER, Embedder, load_embedder
from aigc_studio.support.ingest import ChunkingConfig, EntryDraft, load_entries
from aigc_studio.support.models import KbEntry, KbEntryVersion, KbSource
from aigc_studio.support.retrieval import Document, HybridIndex, SearchMode

DEFAULT_INDEX_DIR = Path("var/support/index")


@dataclass(frozen=True)
class KbEntryInfo:
    """An entry as stored (redacted text), with its current version."""

    id: str
    source: str
    kind: str
    title: str
    text: str
    intent: str | None
    tags: tuple[str, ...]
    version: int
    content_hash: str
    updated_at: datetime

    @property
    def search_text(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "source": self.source, "kind": self.kind, "title": self.title, "text": self.text,
            "intent": self.intent, "tags": list(self.tags), "version": self.version,
            "content_hash": self.content_hash, "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class KbHit:
    """A search result: the entry, its fused score and its rank in each ranker (None: not in that top 50)."""

    entry: KbEntryInfo
    score: float
    bm25_rank: int | None
    dense_rank: int | None


@dataclass
class FileReport:
    """What ingesting one file changed."""

    source: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    pii_redacted: int = 0
    skipped: bool = False  # the file's bytes were the same as last time


class KnowledgeBase:
    """Versioned knowledge-base entries in ``db`` and their search index in ``index_dir``.

    Args:
        db: the database (its migrations create the ``kb_*`` tables).
        index_dir: the folder of the hybrid index.
        embedder: an :class:`Embedder` or the name/path :func:`load_embedder` takes (loaded on first search
            or ingest, not here, so listing and removing stay fast).
        chunking: how documents are cut into entries.
    """

    def __init__(
        self,
        db: Database,
        index_dir: str | Path = DEFAULT_INDEX_DIR,
        embedder: Embedder | str | Path = DEFAULT_EMBEDDER,
        chunking: ChunkingConfig | None = None,
    ) -> None:
        self.db = db
        self.index_dir = Path(index_dir)
        self._embedder = embedder
        self.chunking = chunking or ChunkingConfig()
        self._index: HybridIndex | None = None
        self._index_revision: int | None = None  # the revision() the open index was last brought in line with

    @property
    def embedder(self) -> Embedder:
        if not isinstance(self._embedder, Embedder):
            self._embedder = load_embedder(self._embedder)
        return self._embedder

    @property
    def index(self) -> HybridIndex:
        """The search index, opened on first use and brought in line with the database whenever the knowledge
        base changed since (in this process or another: the CLI beside a running server)."""
        if self._index is None or self.revision() != self._index_revision:
            self.sync_index()
        assert self._index is not None
        return self._index

    def revision(self) -> int:
        """A number that grows with every change to the entries (added, updated, removed), whoever made it:
        the newest row of the ``kb_entry_versions`` history (0 for an empty history). One indexed query."""
        with self.db.session() as session:
            return session.scalar(select(func.max(KbEntryVersion.id))) or 0

    # -------------------------------------------------------------------------------------------- ingest

    def add_files(self, paths: Sequence[str | Path]) -> list[FileReport]:
        """Ingest files; re-ingesting a changed file updates only the entries whose content changed.

        Entries that a file no longer holds are removed (their history stays in ``kb_entry_versions``).
        Every file is read and checked before anything is written, so one bad file changes nothing.

        Raises:
            AigcError: a file is missing, empty, of an unknown kind or malformed (see :func:`load_entries`),
                or two of the given files share a name.
        """
        if not paths:
            raise AigcError("no files given; pass one or more FAQ (.csv/.jsonl) or document (.md/.html/.txt/.pdf) files")
        names = [Path(path).name for path in paths]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise AigcError(f"two files named {duplicates[0]!r}: entries are filed by file name; rename one of them")
        loaded = [(Path(path), load_entries(path, chunking=self.chunking)) for path in paths]
        reports = [self._apply_file(path, drafts) for path, drafts in loaded]
        self._sync_if_open()
        return reports

    def _apply_file(self, path: Path, drafts: list[EntryDraft]) -> FileReport:
        source_name = path.name
        file_sha = sha256_file(path)
        report = FileReport(source=source_name, pii_redacted=sum(draft.pii_redacted for draft in drafts))
        now = utc_now()
        with self.db.session(lock=True) as session:
            source = session.scalar(select(KbSource).where(KbSource.name == source_name))
            if source is not None and source.file_sha256 == file_sha:
                report.unchanged = [draft.id for draft in drafts]
                report.skipped = True
                return report
            if source is None:
                source = KbSource(name=source_name, kind=path.suffix.lower().lstrip("."), file_sha256=file_sha, ingested_at=now)
                session.add(source)
                session.flush()
            else:
                source.file_sha256, source.ingested_at = file_sha, now
            existing = {entry.id: entry for entry in session.scalars(select(KbEntry).where(KbEntry.source_id == source.id))}
            taken = self._ids_in_other_sources(session, [draft.id for draft in drafts], source.id)
            if taken:
                raise AigcError(f"entry id {taken[0]} of {source_name} already belongs to another file; give the row another id")
            # An id removed before and now back continues its history rather than restarting at version 1.
            past = _last_versions(session, [draft.id for draft in drafts if draft.id not in existing])
            for draft in drafts:
                entry = existing.pop(draft.id, None)
                if entry is None:
                    entry = KbEntry(id=draft.id, source_id=source.id, version=past.get(draft.id, 0) + 1, created_at=now)
                    _fill(entry, draft, now)
                    session.add(entry)
                    report.added.append(draft.id)
                elif entry.content_hash != draft.content_hash:
                    entry.version += 1
                    _fill(entry, draft, now)
                    report.updated.append(draft.id)
                else:
                    entry.position = draft.position
                    report.unchanged.append(draft.id)
                    continue
                session.add(_version_row(entry, "updated" if draft.id in report.updated else "added", source_name, now))
            for entry in existing.values():
                session.add(_version_row(entry, "removed", source_name, now, version=entry.version + 1))
                session.delete(entry)
                report.removed.append(entry.id)
        return report

    @staticmethod
    def _ids_in_other_sources(session, ids: list[str], source_id: int) -> list[str]:  # noqa: ANN001
        rows = session.scalars(select(KbEntry.id).where(KbEntry.id.in_(ids), KbEntry.source_id != source_id)) if ids else []
        return list(rows)

    # ------------------------------------------------------------------------------------ list and remove

    def list_entries(self, source: str | None = None) -> list[KbEntryInfo]:
        """Every current entry (of one source file when given), by source then file order."""
        query = select(KbEntry, KbSource.name).join(KbSource).order_by(KbSource.name, KbEntry.position)
        if source is not None:
            query = query.where(KbSource.name == source)
        with self.db.session() as session:
            return [_info(entry, name) for entry, name in session.execute(query)]

    def sources(self) -> list[tuple[str, int]]:
        """Each ingested file and how many entries it holds."""
        with self.db.session() as session:
            rows = session.execute(select(KbSource.name, KbSource.id).order_by(KbSource.name)).all()
            counts = {sid: 0 for _, sid in rows}
            for (sid,) in session.execute(select(KbEntry.source_id)):
                counts[sid] = counts.get(sid, 0) + 1
            return [(name, counts[sid]) for name, sid in rows]

    def get(self, entry_id: str) -> KbEntryInfo | None:
        """The entry with this id, or None."""
        with self.db.session() as session:
            row = session.execute(select(KbEntry, KbSource.name).join(KbSource).where(KbEntry.id == entry_id)).first()
            return _info(*row) if row else None

    def history(self, entry_id: str) -> list[dict[str, object]]:
        """Every version of an entry, oldest first (also after it was removed)."""
        with self.db.session() as session:
            rows = session.scalars(select(KbEntryVersion).where(KbEntryVersion.entry_id == entry_id).order_by(KbEntryVersion.version))
            return [
                {"version": r.version, "change": r.change, "title": r.title, "text": r.text, "content_hash": r.content_hash,
                 "created_at": r.created_at.isoformat()}
                for r in rows
            ]

    def remove(self, id_or_source: str) -> list[str]:
        """Remove one entry (by id) or every entry of a source file (by file name); returns the removed ids.

        Raises:
            AigcError: nothing has that id or file name.
        """
        now = utc_now()
        with self.db.session(lock=True) as session:
            entry = session.get(KbEntry, id_or_source)
            if entry is not None:
                source = session.get(KbSource, entry.source_id)
                # Forget the file's hash, so adding the same file again brings the entry back.
                source.file_sha256 = ""
                session.add(_version_row(entry, "removed", source.name, now, version=entry.version + 1))
                session.delete(entry)
                removed = [entry.id]
            else:
                source = session.scalar(select(KbSource).where(KbSource.name == id_or_source))
                if source is None:
                    raise AigcError(
                        f"no knowledge-base entry or file named {id_or_source!r}; see `aigc support kb list` for ids and files"
                    )
                entries = list(session.scalars(select(KbEntry).where(KbEntry.source_id == source.id)))
                for entry in entries:
                    session.add(_version_row(entry, "removed", source.name, now, version=entry.version + 1))
                    session.delete(entry)
                session.delete(source)
                removed = [entry.id for entry in entries]
        self._sync_if_open()
        return removed

    # -------------------------------------------------------------------------------------------- search

    def search(self, query: str, k: int = 5, mode: SearchMode = "hybrid", query_vector: np.ndarray | None = None) -> list[KbHit]:
        """The ``k`` entries that best answer ``query`` (see :meth:`HybridIndex.search` for the modes and
        ``query_vector``)."""
        hits = self.index.search(query, k=k, mode=mode, query_vector=query_vector)
        entries = self._entries_by_id([hit.id for hit in hits])
        return [KbHit(entries[hit.id], hit.score, hit.bm25_rank, hit.dense_rank) for hit in hits if hit.id in entries]

    def sync_index(self) -> int:
        """Make the index hold exactly the database's entries; returns how many entries were (re-)embedded."""
        index = self._index if self._index is not None else HybridIndex.open(self.index_dir, self.embedder)
        self._index = index
        revision = self.revision()  # read first: a change made while this runs is caught by the next search
        with self.db.session() as session:
            rows = session.execute(select(KbEntry.id, KbEntry.title, KbEntry.text, KbEntry.content_hash)).all()
        wanted = {row.id for row in rows}
        removed = index.remove([doc_id for doc_id in index.ids if doc_id not in wanted])
        embedded = index.upsert(
            Document(row.id, f"{row.title}\n{row.text}" if row.title else row.text, row.content_hash) for row in rows
        )
        if removed or embedded or not (self.index_dir / "index.json").exists():
            index.save()
        self._index_revision = revision
        return embedded

    def _sync_if_open(self) -> None:
        # An index on disk is kept in step even when this process has not searched yet.
        if self._index is not None or (self.index_dir / "index.json").exists() or self._has_entries():
            self.sync_index()

    def _has_entries(self) -> bool:
        with self.db.session() as session:
            return session.scalar(select(KbEntry.id).limit(1)) is not None

    def _entries_by_id(self, ids: Iterable[str]) -> dict[str, KbEntryInfo]:
        ids = list(ids)
        if not ids:
            return {}
        with self.db.session() as session:
            rows = session.execute(select(KbEntry, KbSource.name).join(KbSource).where(KbEntry.id.in_(ids)))
            return {entry.id: _info(entry, name) for entry, name in rows}


def _last_versions(session, ids: list[str]) -> dict[str, int]:  # noqa: ANN001
    if not ids:
        return {}
    query = (
        select(KbEntryVersion.entry_id, func.max(KbEntryVersion.version))
        .where(KbEntryVersion.entry_id.in_(ids))
        .group_by(KbEntryVersion.entry_id)
    )
    return {entry_id: version for entry_id, version in session.execute(query)}


def _fill(entry: KbEntry, draft: EntryDraft, now: datetime) -> None:
    entry.kind, entry.title, entry.text, entry.intent = draft.kind, draft.title, draft.text, draft.intent
    entry.tags, entry.position, entry.content_hash, entry.updated_at = list(draft.tags), draft.position, draft.content_hash, now


def _version_row(entry: KbEntry, change: str, source_name: str, now: datetime, *, version: int | None = None) -> KbEntryVersion:
    return KbEntryVersion(
        entry_id=entry.id, version=entry.version if version is None else version, change=change, source_name=source_name,
        title=entry.title, text=entry.text, intent=entry.intent, tags=entry.tags, content_hash=entry.content_hash, created_at=now,
    )


def _info(entry: KbEntry, source_name: str) -> KbEntryInfo:
    return KbEntryInfo(
        id=entry.id, source=source_name, kind=entry.kind, title=entry.title, text=entry.text, intent=entry.intent,
        tags=tuple(entry.tags or ()), version=entry.version, content_hash=entry.content_hash, updated_at=entry.updated_at,
    )
