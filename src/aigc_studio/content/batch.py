"""Batch jobs that survive a crash: every input line is done exactly once, however often the job is restarted.

``aigc write TASK --input big.jsonl --output out.jsonl`` runs through :func:`run_batch`:

1. each finished line is appended to ``out.jsonl.partial`` as one JSON line ``{"line": N, "flagged": ...,
   "output": {...}}`` with a single ``write`` followed by ``fsync``, so a crash (``kill -9``, power loss) loses
   at most the line being written;
2. the partial file starts with a header naming the input's sha256 and the job's settings; a rerun with the
   same input and settings skips every line already there (a torn last line is cut off first), while a rerun
   with another input or other settings is refused, so results of two different jobs never mix;
3. when every line is done, the outputs are written to ``out.jsonl`` in input order (atomically) and the
   partial file is removed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigc_studio.errors import AigcError
from aigc_studio.fileio import write_jsonl

PARTIAL_SUFFIX = ".partial"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class BatchReport:
    """What :func:`run_batch` did.

    Attributes:
        total: input lines.
        resumed: lines already done by an earlier, interrupted run (skipped now).
        flagged: lines whose result the job marked (e.g. the best candidate breaks a constraint), over all runs.
        seconds: time spent on the lines of this run.
        output: the finished output file.
    """

    total: int
    resumed: int
    flagged: int
    seconds: float
    output: Path


def partial_path(output_path: str | Path) -> Path:
    """Where a batch job keeps its finished lines until it is complete: ``OUTPUT.partial`` beside the output."""
    output_path = Path(output_path)
    return output_path.with_name(output_path.name + PARTIAL_SUFFIX)


def run_batch(
    line_numbers: Sequence[int],
    process: Callable[[int], tuple[dict[str, Any], bool]],
    output_path: str | Path,
    *,
    fingerprint: dict[str, Any],
    on_start: Callable[[int, int], None] | None = None,
    on_line: Callable[[], None] | None = None,
) -> BatchReport:
    """Run ``process`` on every input line not finished yet and write all outputs once the last is done.

    Args:
        line_numbers: the input's line numbers, in input order (they key the finished lines).
        process: ``index -> (output object, flagged)`` for the line at position ``index``.
        output_path: the final JSON Lines file.
        fingerprint: JSON-ready description of the job (input hash, task, model, parameters); a partial file
            made under another fingerprint is refused.
        on_start: called once with ``(total, already done)`` before the first line (progress bars).
        on_line: called after each line this run finishes.

    Returns:
        The report.

    Raises:
        AigcError: the partial file belongs to another job or is damaged beyond a torn last line.
    """
    output_path = Path(output_path)
    partial = partial_path(output_path)
    header = {"aigc_batch": FORMAT_VERSION, "fingerprint": fingerprint}
    done = _read_partial(partial, header, set(line_numbers))
    resumed = len(done)
    if on_start is not None:
        on_start(len(line_numbers), resumed)
    started = time.perf_counter()
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "ab") as handle:
        if handle.tell() == 0:
            _append(handle, header)
        for index, line_number in enumerate(line_numbers):
            if line_number in done:
                continue
            output, flagged = process(index)
            record = {"line": line_number, "flagged": bool(flagged), "output": output}
            _append(handle, record)
            done[line_number] = record
            if on_line is not None:
                on_line()
    seconds = time.perf_counter() - started
    write_jsonl(output_path, [done[line_number]["output"] for line_number in line_numbers])
    partial.unlink()
    return BatchReport(total=len(line_numbers), resumed=resumed,
                       flagged=sum(record["flagged"] for record in done.values()), seconds=seconds, output=output_path)


def _append(handle: Any, record: dict[str, Any]) -> None:
    """One JSON line in one write, then flush and fsync: on disk whole, or (after a crash) cut off at the end."""
    handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    handle.flush()
    os.fsync(handle.fileno())


def _read_partial(path: Path, header: dict[str, Any], line_numbers: set[int]) -> dict[int, dict[str, Any]]:
    """The finished lines of an interrupted run (empty when there is none); cuts a torn last line off the file."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]  # bytes after the last newline are a write the crash cut short
    if len(complete) < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
            os.fsync(handle.fileno())
    lines = complete.decode("utf-8").splitlines()
    if not lines:
        return {}
    where = f"{path} (left by an interrupted run)"
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AigcError(f"{where} is damaged at line {number}; delete it to start the job over", param="output") from None
    if records[0] != json.loads(json.dumps(header, ensure_ascii=False)):
        raise AigcError(f"{where} was made by a job with another input, task, model or settings; rerun that job to "
                        "finish it, or delete the file to start this one", param="output")
    done = {}
    for number, record in enumerate(records[1:], start=2):
        if not isinstance(record, dict) or record.get("line") not in line_numbers or "output" not in record:
            raise AigcError(f"{where} line {number} does not belong to this input; delete the file to start the job "
                            "over", param="output")
        done[record["line"]] = record
    return done
