"""Reading inputs: format detection, columns, streaming rows, and one-line errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigc_studio.data.loading import open_input, resolve_format
from aigc_studio.errors import AigcError


def test_auto_format_follows_the_extension(tmp_path: Path) -> None:
    assert [resolve_format(tmp_path / name) for name in ("a.csv", "a.TSV", "a.jsonl", "a.json", "a.txt")] == [
        "csv", "tsv", "jsonl", "jsonl", "txt",
    ]


def test_unknown_extension_asks_for_format(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match=r"--format") as error:
        resolve_format(tmp_path / "data.parquet")
    assert error.value.param == "format"


def test_unknown_format_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match=r"unknown input format 'xml'.*csv, tsv, jsonl, txt"):
        resolve_format(tmp_path / "a.csv", "xml")


def test_csv_rows_keep_quoted_commas_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes('\ufeffmr,ref\n"name[A], food[B]","Line one,\nline two"\n\nx,y\n'.encode())
    table = open_input(path)
    assert table.columns == ["mr", "ref"]  # the byte-order mark is not part of the first column name
    rows = [row for _, row in table.rows()]
    assert rows == [{"mr": "name[A], food[B]", "ref": "Line one,\nline two"}, {"mr": "x", "ref": "y"}]


def test_tsv_short_rows_leave_missing_columns_empty(tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    path.write_text("source\ttarget\nonly source\n", encoding="utf-8")
    assert [row for _, row in open_input(path).rows()] == [{"source": "only source", "target": ""}]


def test_jsonl_values_become_text(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('{"text": "hi", "n": 3, "none": null, "tags": ["a", "é"]}\n', encoding="utf-8")
    table = open_input(path)
    assert table.format == "jsonl" and table.columns == ["text", "n", "none", "tags"]
    assert next(table.rows())[1] == {"text": "hi", "n": "3", "none": "", "tags": '["a", "é"]'}


def test_txt_file_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "doc.txt"
    path.write_text("first line\nsecond line\n", encoding="utf-8")
    assert list(open_input(path).rows()) == [(1, {"text": "first line\nsecond line\n"})]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match=r"input file not found: .*nothing\.csv"):
        open_input(tmp_path / "nothing.csv")


@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_undecodable_bytes_name_file_and_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"source,target\nfine,ok\ncaf\xe9,latin-1\n")
    with pytest.raises(AigcError, match=rf"bad\{suffix}:3: not valid UTF-8") as error:
        list(open_input(path).rows())
    assert "\n" not in str(error.value)


def test_empty_csv_says_a_header_is_needed(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(AigcError, match="header row"):
        open_input(path)
