"""Reading raw inputs (CSV, TSV, JSON Lines, plain text) as rows of strings, streamed and with clear errors.

Every reader yields ``(line_number, row)`` pairs where ``row`` maps column names to strings, so the rest of
the data pipeline never cares which format a file had. A ``.txt`` file is one document: a single row
``{"text": <whole file>}``. Problems the user can fix (a missing file, bytes that are not UTF-8, a malformed
line) raise :class:`~aigc_studio.errors.AigcError` naming the file and the line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aigc_studio.errors import AigcError
from aigc_studio.fileio import read_jsonl, require_file

InputFormat = Literal["auto", "csv", "tsv", "jsonl", "txt"]
INPUT_FORMATS: tuple[str, ...] = ("auto", "csv", "tsv", "jsonl", "txt")

# .json is read as JSON Lines because that is how the public corpora we use ship (AdvertiseGen's dev.json).
EXTENSION_FORMATS: dict[str, str] = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "txt"}

# The csv module refuses fields over 128 KiB by default; long documents in a CSV column are legitimate.
_CSV_FIELD_LIMIT = 2**31 - 1


@dataclass
class InputTable:
    """One input file opened for reading: its resolved format, its columns, and a way to stream its rows.

    Attributes:
        path: the file.
        format: ``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"txt"`` (never ``"auto"``).
        columns: the column names (CSV header, keys of the first JSON object, or ``["text"]`` for .txt).
    """

    path: Path
    format: str
    columns: list[str]

    def rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """Yield ``(line_number, row)`` for every row; values are strings (missing values are ``""``)."""
        if self.format == "txt":
            yield 1, {"text": _read_text_file(self.path)}
        elif self.format == "jsonl":
            for line_number, obj in read_jsonl(self.path):
                yield line_number, {key: _json_value_to_text(value) for key, value in obj.items()}
        else:
            yield from _read_delimited(self.path, delimiter="," if self.format == "csv" else "\t", header=False)


def resolve_format(path: Path, input_format: str = "auto") -> str:
    """The concrete format of ``path``: ``input_format`` itself, or the one its extension implies for ``"auto"``.

    Raises:
        AigcError: ``input_format`` is not one of :data:`INPUT_FORMATS`, or ``"auto"`` cannot tell from the
            extension.
    """
    if input_format not in INPUT_FORMATS:
        raise AigcError(f"unknown input format {input_format!r}; choose one of: {', '.join(INPUT_FORMATS)}", param="format")
    if input_format != "auto":
        return input_format
    detected = EXTENSION_FORMATS.get(path.suffix.lower())
    if detected is None:
        raise AigcError(
            f"cannot tell the format of {path} from its extension {path.suffix!r}; "
            "pass --format csv, tsv, jsonl or txt",
            param="format",
        )
    return detected


def open_input(path: str | Path, input_format: str = "auto") -> InputTable:
    """Open one input file: check it exists, resolve its format and read its columns (not its rows).

    Args:
        path: a .csv, .tsv, .jsonl/.json or .txt file (or any name with an explicit ``input_format``).
        input_format: ``"auto"`` (by extension) or one of ``csv``, ``tsv``, ``jsonl``, ``txt``.

    Returns:
        An :class:`InputTable` whose ``rows()`` streams the data.

    Raises:
        AigcError: the file is missing or unreadable, the format is unknown, the file has no header or no
            JSON object, or its first lines are not valid UTF-8.
    """
    path = require_file(path, "input file")
    resolved = resolve_format(path, input_format)
    if resolved == "txt":
        columns = ["text"]
    elif resolved == "jsonl":
        first = next(read_jsonl(path), None)
        if first is None:
            raise AigcError(f"{path} holds no JSON object; each line must be one JSON object such as {{\"text\": ...}}")
        columns = list(first[1])
    else:
        header = next(_read_delimited(path, delimiter="," if resolved == "csv" else "\t", header=True), None)
        if header is None:
            raise AigcError(f"{path} is empty; a {resolved} file needs a header row naming its columns")
        columns = list(header[1])
    return InputTable(path=path, format=resolved, columns=columns)


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The lines of ``path`` as text, keeping line endings (the csv module needs them), with UTF-8 errors
    reported by line. A leading byte-order mark (Excel writes one) is dropped."""
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise AigcError(f"{path}:{line_number}: not valid UTF-8 ({error.reason}); re-save the file as UTF-8") from None
            if line_number == 1:
                line = line.removeprefix("\ufeff")
            yield line_number, line


def _read_delimited(path: Path, *, delimiter: str, header: bool) -> Iterator[tuple[int, dict[str, str]]]:
    """Stream a CSV/TSV file with a header row; with ``header=True`` yield only ``(1, {column: column})``."""
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    current_line = 0

    def lines() -> Iterator[str]:
        nonlocal current_line
        for current_line, line in _decoded_lines(path):
            yield line

    reader = csv.reader(lines(), delimiter=delimiter)
    try:
        columns = next(reader, None)
        if columns is None:
            return
        if header:
            yield 1, {column: column for column in columns}
            return
        for values in reader:
            if not any(value.strip() for value in values):
                continue  # blank lines are not records
            # Short rows leave the missing columns empty; the cleaning step then drops them as empty.
            yield current_line, {column: values[i] if i < len(values) else "" for i, column in enumerate(columns)}
    except csv.Error as error:
        raise AigcError(f"{path}:{current_line}: malformed {'CSV' if delimiter == ',' else 'TSV'} ({error}); fix or remove that line") from None


def _read_text_file(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line_number = data.count(b"\n", 0, error.start) + 1
        raise AigcError(f"{path}:{line_number}: not valid UTF-8 ({error.reason}); re-save the file as UTF-8") from None


def _json_value_to_text(value: Any) -> str:
    """Strings stay as they are, numbers and booleans become their text, null becomes empty (dropped later),
    and nested lists or objects become compact JSON so nothing is silently lost."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)
