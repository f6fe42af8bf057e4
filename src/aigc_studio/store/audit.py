"""The audit log: an append-only, hash-chained record of every generation.

Each record holds the hash of the record before it (``prev_hash``; the first holds 64 zeros) and its own
``record_hash = sha256(prev_hash + canonical JSON of its fields)``, where canonical JSON has sorted keys, no
spaces, UTF-8 text and ISO-8601 times. Editing a record breaks its hash; recomputing that hash breaks the next
record's ``prev_hash``; deleting a record leaves a gap in the ids (assigned 1, 2, 3, ... under the chain lock)
and breaks the link. :meth:`AuditLog.verify` finds the first such break.

What a chain cannot show on its own is the removal of the newest records (the rest still links up), or a
rewrite of every record after an edit. Keep the head hash that ``aigc audit verify`` prints somewhere the
database's administrators cannot write (a ticket, a signed e-mail, a notary service) and compare it later.

::

    log = AuditLog(db)
    info = log.append(AuditEntry(kind="completion", model="e2e-copy", params={"temperature": 0.7}, seed=7,
                                 prompt="name[The Eagle]", outputs=["The Eagle is a pub."], latency_ms=12.5))
    log.verify()                                    # AuditVerification(ok=True, records_checked=1, ...)
    log.export(since=datetime(2026, 11, 1, tzinfo=timezone.utc), format="csv", out_path="audit.csv")
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import or_, select

from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_with
from aigc_studio.safety.provenance import ProvenanceRecord, content_hash
from aigc_studio.store.db import Database
from aigc_studio.store.models import AuditOutputHash, AuditRecord, utc_now

if TYPE_CHECKING:
    from aigc_studio.content.pipeline import ContentResult

GENESIS_HASH = "0" * 64
EXPORT_FORMATS: tuple[str, ...] = ("jsonl", "csv")
MAX_KIND_LENGTH = 32
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Rows fetched per round trip while verifying or exporting, so a large log never sits in memory at once.
_BATCH_ROWS = 500


@dataclass
class AuditEntry:
    """One generation to record (the audit log adds id, time and hashes).

    Attributes:
        kind: what was asked: ``"completion"``, ``"chat"``, ``"content"``, ``"moderation"``, ...
        model: the model's name; model_sha256: its weights hash (None when unknown).
        task: the content task (``"ad-copy"``), None for plain completions.
        params: the parameters (JSON-ready).
        seed: the random seed, None when unseeded.
        prompt: what the model was given.
        outputs: the texts returned, the primary (best) one first.
        scores: evaluation results (any JSON: a list per candidate for content tasks).
        latency_ms: how long the request took.
        provenance: the provenance record (its ``record_id`` is filled in on append).
        api_key_id: the key that asked, None without authentication.
        content_sha256: hash of the primary output; None computes it from ``outputs[0]``.
        output_hashes: the hash each output is found by, one per output, when an output is not the content
            itself (an image's generation record: its pixels' sha256); None hashes each output's text.
    """

    kind: str
    model: str | None = None
    model_sha256: str | None = None
    task: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    prompt: str | None = None
    outputs: list[str] = field(default_factory=list)
    scores: Any = None
    latency_ms: float | None = None
    provenance: ProvenanceRecord | dict[str, Any] | None = None
    api_key_id: int | None = None
    content_sha256: str | None = None
    output_hashes: list[str] | None = None


@dataclass(frozen=True)
class AuditRecordInfo:
    """One stored audit record, as read back (every field the hash covers, then the two hashes)."""

    id: int
    created_at: datetime
    api_key_id: int | None
    kind: str
    model: str | None
    model_sha256: str | None
    task: str | None
    params: Any
    seed: int | None
    prompt: str | None
    outputs: Any
    scores: Any
    latency_ms: float | None
    provenance: Any
    content_sha256: str | None
    prev_hash: str
    record_hash: str

    def hashed_fields(self) -> dict[str, Any]:
        """The fields ``record_hash`` covers, JSON-ready (``created_at`` as ISO-8601)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("prev_hash", "record_hash")}
        data["created_at"] = self.created_at.isoformat()
        return data

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (the ``jsonl`` export line)."""
        return {**self.hashed_fields(), "prev_hash": self.prev_hash, "record_hash": self.record_hash}


@dataclass(frozen=True)
class AuditVerification:
    """The answer of :meth:`AuditLog.verify`.

    Attributes:
        ok: the whole chain is intact.
        records_checked: records read (up to and including the first bad one).
        first_bad_id: the id of the first record that is wrong (or missing), None when ok.
        reason: what is wrong with it, None when ok.
        head_hash: the newest record's hash when ok (keep it to detect later truncation), else None.
    """

    ok: bool
    records_checked: int
    first_bad_id: int | None = None
    reason: str | None = None
    head_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, non-ASCII as is, no NaN: the one serialisation the hashes are computed on."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compute_record_hash(prev_hash: str, hashed_fields: dict[str, Any]) -> str:
    """``sha256(prev_hash + canonical_json(hashed_fields))`` as hex."""
    return hashlib.sha256((prev_hash + canonical_json(hashed_fields)).encode("utf-8")).hexdigest()


def verify_chain(records: Iterable[AuditRecordInfo]) -> AuditVerification:
    """Check a whole chain, oldest first, from record 1 (a pure function: also usable on an export).

    Reports the first record whose id is not the next one (a deletion), whose ``prev_hash`` is not the previous
    record's hash (a deletion or a rewritten predecessor), or whose contents do not give its ``record_hash``
    (an edit of the record or of its hash).
    """
    expected_id, prev_hash, checked = 1, GENESIS_HASH, 0
    for record in records:
        checked += 1
        if record.id != expected_id:
            missing = f"record {expected_id}" if record.id == expected_id + 1 else f"records {expected_id}-{record.id - 1}"
            return AuditVerification(False, checked, expected_id, f"{missing} missing (deleted); the next record is {record.id}")
        if record.prev_hash != prev_hash:
            what = "the start of the chain" if expected_id == 1 else f"record {expected_id - 1}'s hash"
            return AuditVerification(
                False, checked, record.id,
                f"prev_hash does not match {what}: a record before it was deleted or rewritten",
            )
        if compute_record_hash(record.prev_hash, record.hashed_fields()) != record.record_hash:
            return AuditVerification(
                False, checked, record.id, "contents do not match record_hash: the record or its hash was edited"
            )
        expected_id, prev_hash = record.id + 1, record.record_hash
    return AuditVerification(True, checked, head_hash=None if checked == 0 else prev_hash)


class AuditLog:
    """The audit log stored in ``db`` (see the module docstring for the chain)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, entry: AuditEntry) -> AuditRecordInfo:
        """Store ``entry`` as the next record of the chain and return it with its id, time and hashes.

        Appends are serialised across threads and processes (the database's write lock), so two writers never
        link to the same predecessor. The provenance's ``record_id`` is set to the new id before hashing.

        Raises:
            AigcError: an empty kind, outputs that are not a list of strings, a malformed content hash, a seed
                outside 64 bits, a provenance that is not a record, or values that are not JSON (NaN and
                infinities are stored as null).
        """
        values = _entry_values(entry)
        output_hashes = _output_hashes(entry)
        with self.db.session(lock=True) as session:
            last = session.execute(
                select(AuditRecord.id, AuditRecord.record_hash).order_by(AuditRecord.id.desc()).limit(1)
            ).first()
            record_id, prev_hash = (last.id + 1, last.record_hash) if last else (1, GENESIS_HASH)
            if values["provenance"] is not None:
                values["provenance"]["record_id"] = record_id
            values.update(id=record_id, created_at=utc_now())
            record_hash = compute_record_hash(prev_hash, {**values, "created_at": values["created_at"].isoformat()})
            session.add(AuditRecord(**values, prev_hash=prev_hash, record_hash=record_hash))
            session.flush()  # the record must exist before the rows that refer to it
            session.add_all(
                AuditOutputHash(audit_record_id=record_id, output_index=index, content_sha256=digest)
                for index, digest in enumerate(output_hashes)
            )
        return AuditRecordInfo(**values, prev_hash=prev_hash, record_hash=record_hash)

    def verify(self) -> AuditVerification:
        """Check every record from the first to the newest (see :func:`verify_chain`)."""
        with self.db.session() as session:
            return verify_chain(self._iter_records(session, since=None))

    def records(self, since: datetime | None = None) -> list[AuditRecordInfo]:
        """Records created at or after ``since`` (all when None), oldest first."""
        with self.db.session() as session:
            return list(self._iter_records(session, since=since))

    def export(self, since: datetime | None, format: Literal["jsonl", "csv"], out_path: str | Path) -> int:
        """Write the records created at or after ``since`` (naive times are UTC) to ``out_path``, atomically.

        ``jsonl``: one record per line with every field. ``csv``: one row per record, JSON-valued fields
        (params, outputs, scores, provenance) as canonical JSON strings. Both keep both hashes, so the export
        can be checked against the chain.

        Returns:
            The number of records written.

        Raises:
            AigcError: an unknown format.
        """
        if format not in EXPORT_FORMATS:
            raise AigcError(f"unknown export format {format!r}; use one of: {', '.join(EXPORT_FORMATS)}", param="format")
        since = _as_utc(since)
        count = 0

        def write(tmp: Path) -> None:
            nonlocal count
            with self.db.session() as session, open(tmp, "w", encoding="utf-8", newline="") as handle:
                columns = [f.name for f in fields(AuditRecordInfo)]
                writer = csv.DictWriter(handle, fieldnames=columns) if format == "csv" else None
                if writer is not None:
                    writer.writeheader()
                for record in self._iter_records(session, since=since):
                    row = record.to_dict()
                    if writer is not None:
                        writer.writerow({key: _csv_cell(value) for key, value in row.items()})
                    else:
                        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    count += 1

        atomic_write_with(out_path, write)
        return count

    def find_by_content_hash(self, sha256: str) -> list[AuditRecordInfo]:
        """Records with an output whose :func:`~aigc_studio.safety.provenance.content_hash` is ``sha256``, oldest first.

        Raises:
            AigcError: ``sha256`` is not 64 lowercase hex digits.
        """
        if not isinstance(sha256, str) or not _SHA256_HEX.match(sha256):
            raise AigcError(f"{sha256!r} is not a sha256 hex digest (64 characters 0-9a-f)", param="sha256")
        with_output = select(AuditOutputHash.audit_record_id).where(AuditOutputHash.content_sha256 == sha256)
        statement = (
            select(AuditRecord)
            .where(or_(AuditRecord.content_sha256 == sha256, AuditRecord.id.in_(with_output)))
            .order_by(AuditRecord.id)
        )
        with self.db.session() as session:
            return [_info(row) for row in session.scalars(statement)]

    @staticmethod
    def _iter_records(session: Any, *, since: datetime | None) -> Iterator[AuditRecordInfo]:
        statement = select(AuditRecord).order_by(AuditRecord.id).execution_options(yield_per=_BATCH_ROWS)
        if since is not None:
            statement = statement.where(AuditRecord.created_at >= since)
        for row in session.scalars(statement):
            yield _info(row)
            session.expunge(row)  # keep the identity map from growing with the log


def audit_content_result(
    audit_log: AuditLog,
    result: ContentResult,
    *,
    api_key_id: int | None = None,
    latency_ms: float | None = None,
    provenance: ProvenanceRecord | dict[str, Any] | None = None,
) -> AuditRecordInfo:
    """Record a content pipeline result: its request and sampling settings, every candidate and its scores.

    ``params`` holds ``{"sampling": ..., "request": ...}``; ``outputs`` the candidates' texts best first;
    ``scores`` one ``{rank, index, total, scores, violations}`` per candidate; ``latency_ms`` defaults to the
    pipeline's own total time; ``model_sha256`` comes from the provenance record when one is given.
    """
    provenance_fields = provenance.to_dict() if isinstance(provenance, ProvenanceRecord) else provenance
    entry = AuditEntry(
        kind="content",
        model=result.model,
        model_sha256=(provenance_fields or {}).get("model_sha256"),
        task=result.request.task,
        params={"sampling": result.params.to_dict(), "request": result.request.to_dict()},
        seed=result.params.seed,
        prompt=result.prompt,
        outputs=[candidate.text for candidate in result.candidates],
        scores=[
            {"rank": c.rank, "index": c.index, "total": c.total, "scores": c.scores, "violations": c.violations}
            for c in result.candidates
        ],
        latency_ms=latency_ms if latency_ms is not None else result.timing.get("total", 0.0) * 1000.0,
        provenance=provenance_fields,
        api_key_id=api_key_id,
    )
    return audit_log.append(entry)


def _output_hashes(entry: AuditEntry) -> list[str]:
    """The hash each output is indexed under (see :attr:`AuditEntry.output_hashes`), checked."""
    if entry.output_hashes is None:
        return [content_hash(text) for text in entry.outputs]
    if len(entry.output_hashes) != len(entry.outputs):
        raise AigcError(f"audit output_hashes must have one hash per output ({len(entry.outputs)}), "
                        f"got {len(entry.output_hashes)}", param="output_hashes")
    for digest in entry.output_hashes:
        if not isinstance(digest, str) or not _SHA256_HEX.match(digest):
            raise AigcError(f"output hash {digest!r} is not 64 lowercase hex digits", param="output_hashes")
    return list(entry.output_hashes)


def _entry_values(entry: AuditEntry) -> dict[str, Any]:
    """The entry's column values, checked, and normalised the way they will read back from the database."""
    if not isinstance(entry.kind, str) or not entry.kind.strip() or len(entry.kind) > MAX_KIND_LENGTH:
        raise AigcError(f"audit kind must be a non-empty name of at most {MAX_KIND_LENGTH} characters, got {entry.kind!r}", param="kind")
    if not isinstance(entry.outputs, (list, tuple)) or not all(isinstance(text, str) for text in entry.outputs):
        raise AigcError("audit outputs must be a list of strings (the texts returned)", param="outputs")
    if entry.seed is not None and (isinstance(entry.seed, bool) or not isinstance(entry.seed, int) or not -(2**63) <= entry.seed < 2**63):
        raise AigcError(f"seed {entry.seed!r} does not fit in 64 bits", param="seed")
    digest = entry.content_sha256
    if digest is None and entry.outputs:
        digest = content_hash(entry.outputs[0])
    if digest is not None and not _SHA256_HEX.match(digest):
        raise AigcError(f"content_sha256 {digest!r} is not 64 lowercase hex digits", param="content_sha256")
    provenance = entry.provenance.to_dict() if isinstance(entry.provenance, ProvenanceRecord) else entry.provenance
    if provenance is not None and not isinstance(provenance, dict):
        raise AigcError("audit provenance must be a ProvenanceRecord or a dict of its fields", param="provenance")
    latency = _json_ready(entry.latency_ms)
    return {
        "api_key_id": entry.api_key_id,
        "kind": entry.kind.strip(),
        "model": entry.model,
        "model_sha256": entry.model_sha256,
        "task": entry.task,
        "params": _json_ready(entry.params),
        "seed": entry.seed,
        "prompt": entry.prompt,
        "outputs": list(entry.outputs),
        "scores": _json_ready(entry.scores),
        "latency_ms": float(latency) if latency is not None else None,
        "provenance": _json_ready(provenance),
        "content_sha256": digest,
    }


def _json_ready(value: Any) -> Any:
    """``value`` as it reads back from a JSON column: tuples become lists, NaN and infinities null.

    What is hashed must equal what is stored, so the hash is computed on this form.
    """
    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {str(key): clean(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(inner) for inner in item]
        return item

    try:
        return json.loads(canonical_json(clean(value)))
    except TypeError as error:
        raise AigcError(f"audit values must be JSON (strings, numbers, lists, objects): {error}") from None


def _as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _csv_cell(value: Any) -> Any:
    return canonical_json(value) if isinstance(value, (dict, list)) else value


def _info(row: AuditRecord) -> AuditRecordInfo:
    return AuditRecordInfo(**{f.name: getattr(row, f.name) for f in fields(AuditRecordInfo)})
