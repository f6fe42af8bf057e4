"""The content library: save, search (English and Chinese), update, tags, delete, export in three formats."""

from __future__ import annotations

import csv
import io
import json

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.store.db import Database
from aigc_studio.store.library import ContentLibrary, ContentNotFoundError, NewContentItem


@pytest.fixture
def library(db: Database) -> ContentLibrary:
    library = ContentLibrary(db)
    library.save(NewContentItem(task="ad-copy", text="The Eagle is a riverside pub serving French food.",
                                tags=["pubs", "summer"], language="en", scores={"total": 0.8}))
    library.save(NewContentItem(task="product-description", text="夏季新款连衣裙，显瘦百搭，适合通勤。",
                                title="夏季连衣裙", tags=["服装"], language="zh"))
    library.save({"task": "ad-copy", "text": "100% cotton_shirt = comfort", "tags": ["shirts"]})
    return library


def test_save_and_get(library: ContentLibrary) -> None:
    item = library.save(NewContentItem(task="email-subject", text="Last chance: 20% off\nall week", tags=["sale"]))
    assert len(item.id) == 36 and item.title == "Last chance: 20% off" and item.created_at == item.updated_at
    assert library.get(item.id) == item


def test_search_english_chinese_tags_and_tasks(library: ContentLibrary) -> None:
    assert [item.title for item in library.search("RIVERSIDE pub")] == ["The Eagle is a riverside pub serving French food."]
    assert [item.title for item in library.search("连衣裙")] == ["夏季连衣裙"]
    assert [item.language for item in library.search("显瘦 通勤")] == ["zh"]
    assert library.search("riverside 连衣裙") == []  # every term must appear
    assert {item.task for item in library.search(None, task="ad-copy")} == {"ad-copy"}
    assert len(library.search(None, task="ad-copy")) == 2
    assert [item.tags for item in library.search(None, tag="服装")] == [["服装"]]
    assert library.count() == 3 and library.count("pub") == 1


def test_like_wildcards_are_literal(library: ContentLibrary) -> None:
    assert [item.text for item in library.search("100%")] == ["100% cotton_shirt = comfort"]
    assert [item.text for item in library.search("n_s")] == ["100% cotton_shirt = comfort"]
    assert library.search("%") != [] and len(library.search("%")) == 1
    assert library.search("o_n") == []  # "_" is not "any character"


def test_paging_newest_change_first(library: ContentLibrary) -> None:
    oldest = library.search(None)[-1]
    library.update(oldest.id, title="Now the newest")
    assert library.search(None, limit=1)[0].title == "Now the newest"
    assert len(library.search(None, limit=2, offset=2)) == 1
    with pytest.raises(AigcError, match="limit"):
        library.search(None, limit=0)


def test_update_text_title_and_tags(library: ContentLibrary) -> None:
    item = library.search("riverside")[0]
    updated = library.update(item.id, text="The Eagle: a riverside pub.", tags=["summer", "pubs", "new", "new"])
    assert updated.text == "The Eagle: a riverside pub." and updated.tags == ["summer", "pubs", "new"]
    assert updated.updated_at > item.updated_at and updated.created_at == item.created_at
    assert library.search(None, tag="new")[0].id == item.id
    assert library.get(item.id).tags == ["summer", "pubs", "new"]
    assert library.update(item.id, tags=[]).tags == []
    assert library.search(None, tag="summer") == []


def test_delete(library: ContentLibrary) -> None:
    item = library.search("连衣裙")[0]
    library.delete(item.id)
    with pytest.raises(ContentNotFoundError, match="no content item"):
        library.get(item.id)
    with pytest.raises(ContentNotFoundError):
        library.delete(item.id)
    assert library.search(None, tag="服装") == []


def test_bad_items_are_refused(library: ContentLibrary) -> None:
    with pytest.raises(AigcError, match="text is empty"):
        library.save(NewContentItem(task="ad-copy", text="  "))
    with pytest.raises(AigcError, match="unknown library item field"):
        library.save({"task": "ad-copy", "text": "x", "colour": "red"})
    with pytest.raises(AigcError, match="tags must be a list"):
        library.save(NewContentItem(task="ad-copy", text="x", tags="summer"))
    with pytest.raises(AigcError, match="at most 200"):
        library.save(NewContentItem(task="ad-copy", text="x", title="t" * 201))
    with pytest.raises(ContentNotFoundError):
        library.update("no-such-id", text="x")


def test_export_csv_json_markdown(library: ContentLibrary) -> None:
    items = library.search(None)
    rows = list(csv.DictReader(io.StringIO(library.export(items, "csv"))))
    assert len(rows) == 3 and {row["title"] for row in rows} >= {"夏季连衣裙"}
    english = next(row for row in rows if row["language"] == "en")
    assert english["tags"] == "pubs, summer" and json.loads(english["scores"]) == {"total": 0.8}

    data = json.loads(library.export(items, "json"))
    assert [entry["id"] for entry in data] == [item.id for item in items] and data[0]["created_at"]

    markdown = library.export(items, "markdown")
    assert markdown.startswith("# Content library") and "## 夏季连衣裙" in markdown
    assert "*product-description · zh · tags: 服装 · updated " in markdown and markdown.count("\n---\n") == 2
    assert ContentLibrary.export([], "markdown").endswith("No items.\n")
    with pytest.raises(AigcError, match="unknown export format 'pdf'"):
        library.export(items, "pdf")  # type: ignore[arg-type]


def test_csv_export_defuses_spreadsheet_formulas(library: ContentLibrary) -> None:
    item = library.save(NewContentItem(task="ad-copy", text="=HYPERLINK(\"http://x\")", title="formula"))
    row = next(csv.DictReader(io.StringIO(library.export([item], "csv"))))
    assert row["text"] == "'=HYPERLINK(\"http://x\")"
