"""Ingestion of every supported format: entries, stable ids, content hashes, chunking, redaction, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.support.ingest import ChunkingConfig, chunk_text, load_entries

from .conftest import FAQ_CSV, make_pdf


def test_csv_faq_rows_become_entries_with_intent_and_tags(faq_csv: Path) -> None:
    entries = load_entries(faq_csv)
    assert [e.title for e in entries] == ["How do I reset my PIN?", "My card has not arrived", "Is topping up by bank transfer free?"]
    assert entries[0].kind == "faq" and entries[0].intent == "change_pin" and entries[0].tags == ("cards", "pin")
    assert entries[0].text.startswith("Go to an ATM")
    assert len({e.id for e in entries}) == 3 and all(len(e.content_hash) == 64 for e in entries)


def test_ids_are_stable_and_hashes_follow_content(tmp_path: Path, faq_csv: Path) -> None:
    before = {e.title: e for e in load_entries(faq_csv)}
    faq_csv.write_text(FAQ_CSV.replace("pick a new PIN", "choose a new PIN"), encoding="utf-8")
    after = {e.title: e for e in load_entries(faq_csv)}
    assert {t: e.id for t, e in before.items()} == {t: e.id for t, e in after.items()}
    changed = [t for t in before if before[t].content_hash != after[t].content_hash]
    assert changed == ["How do I reset my PIN?"]


def test_jsonl_faq_with_own_ids_and_json_tags(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    rows = [
        {"id": "fees-1", "question": "What does an ATM withdrawal cost?", "answer": "Free up to 200 EUR a month.", "tags": ["fees", "atm"]},
        {"id": "fees-2", "question": "什么是汇率？", "answer": "我们使用实时银行间汇率。"},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    entries = load_entries(path)
    assert entries[0].tags == ("fees", "atm") and entries[0].intent is None
    assert entries[1].text == "我们使用实时银行间汇率。"
    # the id follows the row's own id, not its question: rewording the question keeps it
    rows[0]["question"] = "How much is a cash withdrawal?"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert load_entries(path)[0].id == entries[0].id


def test_markdown_is_chunked_by_headings_with_heading_paths(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(
        "# Cards\nAll about cards.\n\n## Lost card\nFreeze it in the app.\n\n```\n# not a heading\n```\n"
        "## Contactless\nThe first payment needs the PIN.\n# Transfers\nSEPA takes a day.\n",
        encoding="utf-8",
    )
    entries = load_entries(path)
    assert [e.title for e in entries] == ["Cards", "Cards > Lost card", "Cards > Contactless", "Transfers"]
    assert "# not a heading" in entries[1].text
    assert all(e.kind == "chunk" for e in entries)


def test_html_text_is_extracted_by_section_without_scripts(tmp_path: Path) -> None:
    path = tmp_path / "help.html"
    path.write_text(
        "<html><head><title>Help</title><style>p{color:red}</style></head><body>"
        "<h1>Help centre</h1><p>Welcome &amp; hello.</p><script>var x = 1;</script>"
        "<h2>Top-ups</h2><ul><li>By card: instant.</li><li>By transfer: one day.</li></ul></body></html>",
        encoding="utf-8",
    )
    entries = load_entries(path)
    assert [e.title for e in entries] == ["Help centre", "Help centre > Top-ups"]
    assert entries[0].text == "Welcome & hello."
    assert "By card: instant.\nBy transfer: one day." == entries[1].text
    assert not any("var x" in e.text or "color" in e.text for e in entries)


def test_plain_text_is_cut_by_length_with_overlap(tmp_path: Path) -> None:
    sentences = [f"Sentence number {i} says something about fees." for i in range(60)]
    path = tmp_path / "notes.txt"
    path.write_text(" ".join(sentences), encoding="utf-8")
    config = ChunkingConfig(max_chars=300, overlap_chars=60)
    entries = load_entries(path, chunking=config)
    assert len(entries) > 5 and all(len(e.text) <= 300 for e in entries)
    for left, right in zip(entries, entries[1:]):  # each chunk starts with the tail of the previous one
        assert right.text[:20] in left.text
    covered = " ".join(e.text for e in entries)
    assert all(s in covered for s in sentences)


def test_chunking_chinese_without_spaces() -> None:
    text = "我们的银行卡可以在全球使用。" * 40
    chunks = chunk_text(text, ChunkingConfig(max_chars=120, overlap_chars=20))
    assert len(chunks) > 3 and all(len(c) <= 120 for c in chunks)
    assert all(c.endswith("。") for c in chunks[:-1])  # cut at sentence ends


def test_pdf_pages_become_chunks(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "manual.pdf", ["Lost cards must be frozen in the app.", "Transfers in EUR are free."])
    entries = load_entries(path)
    assert [(e.title, e.text) for e in entries] == [
        ("page 1", "Lost cards must be frozen in the app."), ("page 2", "Transfers in EUR are free."),
    ]


def test_personal_data_is_redacted_at_intake(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text(
        'question,answer\nWho handles complaints?,"Write to Mr. John Smith at john.smith@example.com or call +44 20 7946 0958."\n',
        encoding="utf-8",
    )
    entry = load_entries(path)[0]
    assert "john.smith@example.com" not in entry.text and "7946" not in entry.text and "John Smith" not in entry.text
    assert "<EMAIL_1>" in entry.text and entry.pii_redacted == 3
    pdf = make_pdf(tmp_path / "c.pdf", ["Escalations: anna.lee@example.org"])
    assert load_entries(pdf)[0].text == "Escalations: <EMAIL_1>"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "is empty"),
        ("wrong.csv", "title_x,body\nfoo,bar\n", "needs a 'question' and an 'answer' column"),
        ("noanswer.csv", "question,answer\nWhat?,\n", "the answer is empty"),
        ("dupe.csv", "question,answer\nWhat?,A\nwhat?,B\n", "the same question"),
        ("bad.pdf", "%PDF-1.4\nthis is not really a pdf", "not a readable PDF"),
        ("notes.docx", "binary", "unknown file kind"),
        ("blank.md", "\n\n   \n", "holds no text"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AigcError, match=message):
        load_entries(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match="not found"):
        load_entries(tmp_path / "nope.csv")
