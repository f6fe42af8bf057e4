"""The audit log: appends chain, verify catches edits, deletions and changed hashes, exports filter by time."""

from __future__ import annotations

import csv
import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from aigc_studio.errors import AigcError
from aigc_studio.safety.provenance import content_hash, make_provenance
from aigc_studio.store.audit import GENESIS_HASH, AuditEntry, AuditLog, compute_record_hash
from aigc_studio.store.db import Database
from aigc_studio.store.keys import create_key, list_keys
from aigc_studio.store.library import ContentLibrary, NewContentItem


def entry(number: int, **changes: object) -> AuditEntry:
    fields = dict(
        kind="completion", model="e2e-copy", model_sha256="ab" * 32, params={"temperature": 0.7, "top_p": 0.9},
        seed=number, prompt=f"name[Place {number}]", outputs=[f"Place {number} is a pub.", "Another text."],
        scores={"fluency": 0.5}, latency_ms=12.5,
    )
    fields.update(changes)
    return AuditEntry(**fields)  # type: ignore[arg-type]


def fill(log: AuditLog, count: int) -> None:
    for number in range(1, count + 1):
        log.append(entry(number))


def test_append_chains_records_and_verify_accepts_them(db: Database) -> None:
    log = AuditLog(db)
    first = log.append(entry(1, prompt="订单：夏季连衣裙"))
    second = log.append(entry(2))
    assert (first.id, second.id) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.record_hash
    assert first.record_hash == compute_record_hash(GENESIS_HASH, first.hashed_fields())
    assert first.created_at.tzinfo is not None
    assert first.content_sha256 == content_hash("Place 1 is a pub.")
    result = log.verify()
    assert result.ok and result.records_checked == 2 and result.head_hash == second.record_hash


def test_empty_log_verifies(db: Database) -> None:
    result = AuditLog(db).verify()
    assert result.ok and result.records_checked == 0 and result.head_hash is None


def test_edited_record_is_caught(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 4)
    with db.session() as session:
        session.execute(text("UPDATE audit_records SET prompt = 'something else' WHERE id = 3"))
    result = log.verify()
    assert not result.ok and result.first_bad_id == 3 and "edited" in result.reason


def test_edited_json_field_is_caught(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 3)
    with db.session() as session:
        session.execute(text("UPDATE audit_records SET outputs = :outputs WHERE id = 2"), {"outputs": json.dumps(["forged"])})
    result = log.verify()
    assert not result.ok and result.first_bad_id == 2


def test_deleted_record_is_caught(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 5)
    with db.session() as session:
        session.execute(text("DELETE FROM audit_output_hashes WHERE audit_record_id = 3"))
        session.execute(text("DELETE FROM audit_records WHERE id = 3"))
    result = log.verify()
    assert not result.ok and result.first_bad_id == 3 and "deleted" in result.reason


def test_deleted_and_renumbered_record_is_caught(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 3)
    with db.session() as session:
        session.execute(text("DELETE FROM audit_output_hashes"))
        session.execute(text("DELETE FROM audit_records WHERE id = 2"))
        session.execute(text("UPDATE audit_records SET id = 2 WHERE id = 3"))
    result = log.verify()
    assert not result.ok and result.first_bad_id == 2 and "prev_hash" in result.reason


def test_edited_hash_is_caught_even_when_recomputed(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 3)
    with db.session() as session:
        session.execute(text("UPDATE audit_records SET record_hash = :h WHERE id = 1"), {"h": "0" * 63 + "1"})
    result = log.verify()
    assert not result.ok and result.first_bad_id == 1 and "record_hash" in result.reason

    # an attacker who edits record 1 and recomputes its hash still breaks record 2's link
    record = log.records()[0]
    fields = {**record.hashed_fields(), "prompt": "forged"}
    with db.session() as session:
        session.execute(
            text("UPDATE audit_records SET prompt = 'forged', record_hash = :h WHERE id = 1"),
            {"h": compute_record_hash(GENESIS_HASH, fields)},
        )
    result = log.verify()
    assert not result.ok and result.first_bad_id == 2 and "prev_hash" in result.reason


def test_concurrent_appends_keep_one_chain(db: Database) -> None:
    log = AuditLog(db)
    errors: list[BaseException] = []

    def worker(thread: int) -> None:
        try:
            for number in range(5):
                log.append(entry(thread * 100 + number))
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    records = log.records()
    assert [record.id for record in records] == list(range(1, 21))
    assert len({record.prev_hash for record in records}) == 20  # no two records link to the same predecessor
    assert log.verify().ok


def test_mixed_concurrent_writers_wait_for_each_other(db: Database) -> None:
    log, library = AuditLog(db), ContentLibrary(db)
    errors: list[BaseException] = []

    def worker(thread: int) -> None:
        try:
            for number in range(4):
                record = log.append(entry(thread * 100 + number))
                item = library.save(NewContentItem(task="ad-copy", text=f"text {thread}-{number}", audit_record_id=record.id))
                library.update(item.id, tags=[f"thread-{thread}"])
                create_key(db, f"key-{thread}-{number}")
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert log.verify().records_checked == 12 and library.count() == 12 and len(list_keys(db)) == 12


def test_provenance_gets_the_record_id_and_is_hashed(db: Database) -> None:
    log = AuditLog(db)
    provenance = make_provenance("Place 1 is a pub.", model="e2e-copy", seed=1, watermark_key_id="wm-1")
    info = log.append(entry(1, provenance=provenance))
    assert info.provenance["record_id"] == info.id == 1
    assert info.provenance["content_sha256"] == info.content_sha256
    assert log.verify().ok


def test_export_since_in_both_formats(db: Database, tmp_path: Path) -> None:
    log = AuditLog(db)
    fill(log, 3)
    with db.session() as session:  # backdate record 1 (then its hash no longer matches, which export ignores)
        session.execute(text("UPDATE audit_records SET created_at = :t WHERE id = 1"),
                        {"t": datetime(2020, 1, 1, tzinfo=timezone.utc) if db.dialect != "sqlite" else "2020-01-01 00:00:00.000000"})
    since = datetime.now(timezone.utc) - timedelta(days=1)
    assert log.export(since, "jsonl", tmp_path / "audit.jsonl") == 2
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [2, 3]
    assert lines[0]["prev_hash"] and lines[0]["outputs"] == ["Place 2 is a pub.", "Another text."]

    assert log.export(None, "csv", tmp_path / "audit.csv") == 3
    with open(tmp_path / "audit.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == ["1", "2", "3"]
    assert json.loads(rows[1]["params"]) == {"temperature": 0.7, "top_p": 0.9}
    assert log.export(datetime(2019, 12, 31), "jsonl", tmp_path / "naive.jsonl") == 3  # naive: UTC
    with pytest.raises(AigcError, match="unknown export format 'xml'"):
        log.export(None, "xml", tmp_path / "audit.xml")  # type: ignore[arg-type]


def test_find_by_content_hash_finds_any_returned_candidate(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 2)
    assert [record.id for record in log.find_by_content_hash(content_hash("Place 2 is a pub."))] == [2]
    assert [record.id for record in log.find_by_content_hash(content_hash("Another  text."))] == [1, 2]
    assert log.find_by_content_hash(content_hash("never generated")) == []
    with pytest.raises(AigcError, match="not a sha256"):
        log.find_by_content_hash("xyz")


def test_bad_entries_are_refused(db: Database) -> None:
    log = AuditLog(db)
    with pytest.raises(AigcError, match="kind"):
        log.append(entry(1, kind=""))
    with pytest.raises(AigcError, match="list of strings"):
        log.append(entry(1, outputs="one string"))
    with pytest.raises(AigcError, match="64 bits"):
        log.append(entry(1, seed=2**64))
    with pytest.raises(AigcError, match="JSON"):
        log.append(entry(1, params={"when": object()}))
    assert log.verify().records_checked == 0


def test_non_finite_numbers_are_stored_as_null_and_still_verify(db: Database) -> None:
    log = AuditLog(db)
    info = log.append(entry(1, scores={"perplexity": float("inf")}, latency_ms=float("nan")))
    assert info.scores == {"perplexity": None} and info.latency_ms is None
    assert log.verify().ok
