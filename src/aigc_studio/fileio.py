"""File helpers used across the package: atomic writes, hashing and JSON Lines with clear errors.

Every file the product writes that a crash must not corrupt (checkpoints, model weights, databases exports,
JSONL outputs) goes through :func:`atomic_write` or :func:`atomic_write_with`: write to a temporary file in
the same directory, flush and fsync, then ``os.replace`` it over the target, then fsync the directory.
A reader therefore sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from aigc_studio.errors import AigcError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_with(path: str | Path, write: Callable[[Path], None], *, mode: int | None = None) -> Path:
    """Atomically create or replace ``path`` with whatever ``write(tmp_path)`` writes.

    ``write`` receives a temporary path in the same directory (so the final rename never crosses a
    filesystem) and must write the complete file there. ``mode`` sets the file's permissions (0o600 for a
    secret); None gives the mode a plain ``open()`` would. Returns the final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        write(tmp_path)
        # mkstemp (and some writers that replace the file) leave it readable by its owner only; give it the
        # mode a plain open() would.
        os.chmod(tmp_path, 0o666 & ~_current_umask() if mode is None else mode)
        with open(tmp_path, "rb+") as handle:
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Atomically write ``data`` (bytes, or text encoded as UTF-8) to ``path``."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(payload))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented UTF-8 JSON (non-ASCII kept readable)."""
    return atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks so large files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def require_file(path: str | Path, what: str = "file") -> Path:
    """Return ``path`` as a Path if it is a readable file, else raise an :class:`AigcError` saying so."""
    path = Path(path)
    if not path.exists():
        raise AigcError(f"{what} not found: {path}; check the path")
    if not path.is_file():
        raise AigcError(f"{what} is not a file: {path}")
    if not os.access(path, os.R_OK):
        raise AigcError(f"{what} is not readable: {path}; check its permissions")
    return path


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON Lines file.

    Raises:
        AigcError: the file is missing, a line is not valid UTF-8 or JSON, or is not a JSON object;
            the message names the file and the 1-based line number.
    """
    path = require_file(path, "input file")
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise AigcError(f"{path}:{line_number}: not valid UTF-8 ({error.reason}); re-save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise AigcError(f"{path}:{line_number}: malformed JSON ({error.msg}); each line must be one JSON object") from None
            if not isinstance(obj, dict):
                raise AigcError(f"{path}:{line_number}: expected a JSON object, got {type(obj).__name__}")
            yield line_number, obj


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Atomically write ``rows`` as JSON Lines (UTF-8, non-ASCII kept readable)."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return atomic_write(path, text)
