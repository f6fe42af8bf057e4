"""The knowledge base: versioned entries in the database, incremental updates, removal, redaction, the index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from aigc_studio.errors import AigcError
from aigc_studio.store.db import Database
from aigc_studio.support.embeddings import Embedder, load_embedder
from aigc_studio.support.kb import KnowledgeBase

from .conftest import FAQ_CSV


class CountingEmbedder(Embedder):
    """MiniLM, counting the passages it embeds (to check that updates embed only what changed)."""

    def __init__(self) -> None:
        self.inner = load_embedder("minilm")
        self.name, self.dim, self.passages = "minilm", self.inner.dim, 0

    def _encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        if not query:
            self.passages += len(texts)
        return self.inner._encode(texts, query=query)


@pytest.fixture
def kb(db: Database, tmp_path: Path) -> KnowledgeBase:
    return KnowledgeBase(db, index_dir=tmp_path / "index", embedder=CountingEmbedder())


def test_add_list_and_search(kb: KnowledgeBase, faq_csv: Path) -> None:
    [report] = kb.add_files([faq_csv])
    assert len(report.added) == 3 and not report.updated and not report.removed
    entries = kb.list_entries()
    assert [e.version for e in entries] == [1, 1, 1] and {e.source for e in entries} == {"faq.csv"}
    hits = kb.search("I forgot my PIN number", k=2)
    assert hits[0].entry.intent == "change_pin"


def test_changing_one_row_updates_only_that_entry(kb: KnowledgeBase, faq_csv: Path) -> None:
    kb.add_files([faq_csv])
    embedded_at_first = kb.embedder.passages
    before = {e.id: e for e in kb.list_entries()}
    faq_csv.write_text(FAQ_CSV.replace("within 5 working days", "within 3 working days"), encoding="utf-8")
    [report] = kb.add_files([faq_csv])
    after = {e.id: e for e in kb.list_entries()}
    assert len(report.updated) == 1 and len(report.unchanged) == 2 and not report.added
    [changed] = report.updated
    assert after[changed].version == 2 and "3 working days" in after[changed].text
    assert all(after[i].version == 1 and after[i].updated_at == before[i].updated_at for i in after if i != changed)
    assert kb.embedder.passages == embedded_at_first + 1  # the index embedded the changed entry only
    assert [h["version"] for h in kb.history(changed)] == [1, 2]
    # the same bytes again: nothing is read into the database
    [again] = kb.add_files([faq_csv])
    assert again.skipped and len(again.unchanged) == 3


def test_rows_dropped_from_a_file_are_removed_with_history(kb: KnowledgeBase, faq_csv: Path) -> None:
    kb.add_files([faq_csv])
    faq_csv.write_text("\n".join(FAQ_CSV.splitlines()[:3]) + "\n", encoding="utf-8")
    [report] = kb.add_files([faq_csv])
    assert len(report.removed) == 1 and len(kb.list_entries()) == 2
    assert [h["change"] for h in kb.history(report.removed[0])] == ["added", "removed"]
    assert report.removed[0] not in kb.index.ids


def test_remove_by_id_and_by_source(kb: KnowledgeBase, faq_csv: Path, tmp_path: Path) -> None:
    guide = tmp_path / "guide.md"
    guide.write_text("# Lost card\nFreeze it in the app.\n", encoding="utf-8")
    kb.add_files([faq_csv, guide])
    first = kb.list_entries("faq.csv")[0]
    assert kb.remove(first.id) == [first.id]
    assert kb.get(first.id) is None and len(kb.list_entries()) == 3
    # adding the unchanged file again brings the removed entry back, as its next version
    [report] = kb.add_files([faq_csv])
    assert report.added == [first.id] and kb.get(first.id).version == 3
    assert len(kb.remove("guide.md")) == 1 and [name for name, _ in kb.sources()] == ["faq.csv"]
    with pytest.raises(AigcError, match="no knowledge-base entry or file named"):
        kb.remove("nothing-here")


def test_personal_data_never_reaches_the_database_or_index(kb: KnowledgeBase, db: Database, tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text('question,answer\nWho do I write to?,"Mail support lead at jane.roe@example.com, phone 13812345678."\n', encoding="utf-8")
    kb.add_files([path])
    with db.session() as session:
        dumped = " ".join(
            str(row) for table in ("kb_entries", "kb_entry_versions") for row in session.execute(text(f"SELECT * FROM {table}"))
        )
    assert "jane.roe@example.com" not in dumped and "13812345678" not in dumped and "<EMAIL_1>" in dumped
    index_files = " ".join(p.read_bytes().decode("utf-8", "replace") for p in kb.index_dir.iterdir())
    assert "jane.roe" not in index_files


def test_index_is_persisted_and_reopened_without_embedding(kb: KnowledgeBase, db: Database, faq_csv: Path) -> None:
    kb.add_files([faq_csv])
    reopened = KnowledgeBase(db, index_dir=kb.index_dir, embedder=CountingEmbedder())
    assert reopened.search("card not arrived", k=1)[0].entry.intent == "card_arrival"
    assert reopened.embedder.passages == 0


def test_a_bad_file_changes_nothing(kb: KnowledgeBase, faq_csv: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(AigcError, match="is empty"):
        kb.add_files([faq_csv, empty])
    assert kb.list_entries() == []
