"""How much of a tune is copied from the training corpus: an n-gram index of note runs.

A note is ``(pitch, units)`` in the training key (C major / A minor), rests left out. A *copied run* of
length L is L consecutive notes of a tune that also occur, consecutively and identically, in one training
tune. :class:`NGramIndex` hashes every L-gram of the corpus (a 64-bit polynomial hash computed with numpy,
whole arrays at a time) into a sorted array and looks a tune's L-grams up with ``searchsorted``. Because a
copied run of L notes contains one of L-1 notes, the longest copied run is found by binary search on L.

``aigc compose`` refuses (and regenerates) tunes with a copied run of :data:`COPY_LIMIT` notes or more;
the index for that one length is saved next to the data and the bundled model (``copy-index-12.npy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_with
from aigc_studio.music.tokens import DURATIONS

COPY_LIMIT = 12  # a tune may share at most 11 consecutive notes with any training tune
INDEX_FILE = "copy-index-{n}.npy"
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (Fibonacci hashing)
_SEPARATOR = 1 << 20  # larger than any note code, marks tune boundaries


def note_codes(notes: Sequence[tuple[int, int]]) -> np.ndarray:
    """One integer per note: ``pitch * 16 + index of its duration`` (+1, so no code is 0)."""
    return np.asarray([pitch * 16 + DURATIONS.index(units) + 1 for pitch, units in notes], dtype=np.uint64)


def _ngram_hashes(codes: np.ndarray, n: int) -> np.ndarray:
    """Hashes of every n-gram of ``codes`` that does not cross a separator."""
    if len(codes) < n:
        return np.zeros(0, dtype=np.uint64)
    width = len(codes) - n + 1
    hashes = np.zeros(width, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping modulo 2**64 is the hash
        for offset in range(n):
            hashes = hashes * _MULTIPLIER + codes[offset:offset + width]
    separators = np.concatenate([[0], np.cumsum(codes == _SEPARATOR)])
    clean = separators[n:n + width] - separators[:width] == 0
    return hashes[clean]


class NGramIndex:
    """Sorted n-gram hashes of a corpus of note sequences, per length, built on demand.

    Args:
        sequences: the training tunes' notes; None when the index is loaded from saved lengths only.
    """

    def __init__(self, sequences: Sequence[Sequence[tuple[int, int]]] | None = None) -> None:
        self._codes: np.ndarray | None = None
        if sequences is not None:
            parts: list[np.ndarray] = []
            for notes in sequences:
                parts.extend([note_codes(notes), np.asarray([_SEPARATOR], dtype=np.uint64)])
            self._codes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
        self._tables: dict[int, np.ndarray] = {}

    @property
    def can_measure(self) -> bool:
        """True when built from the corpus itself, so any run length (and :meth:`longest_run`) can be queried."""
        return self._codes is not None

    def table(self, n: int) -> np.ndarray:
        """The sorted unique hashes of every n-gram in the corpus."""
        if n not in self._tables:
            if self._codes is None:
                raise AigcError(f"this copy index holds only runs of {sorted(self._tables)} notes, not {n}; "
                                "build it from the training tunes (--corpus-data)")
            self._tables[n] = np.unique(_ngram_hashes(self._codes, n))
        return self._tables[n]

    def has_run(self, notes: Sequence[tuple[int, int]], n: int) -> bool:
        """True when some ``n`` consecutive notes of ``notes`` occur in the corpus."""
        if len(notes) < n:
            return False
        table = self.table(n)
        queries = _ngram_hashes(note_codes(notes), n)
        positions = np.searchsorted(table, queries)
        found = positions < len(table)
        return bool(np.any(table[positions[found]] == queries[found]))

    def longest_run(self, notes: Sequence[tuple[int, int]]) -> int:
        """The length of the longest run of ``notes`` copied from one corpus tune (0 when no note is)."""
        low, high = 0, len(notes)  # a run of `low` notes is copied; none longer than `high` can be
        while low < high:
            middle = (low + high + 1) // 2
            if self.has_run(notes, middle):
                low = middle
            else:
                high = middle - 1
        return low

    def save(self, directory: str | Path, n: int = COPY_LIMIT) -> Path:
        """Write the table for length ``n`` as ``copy-index-<n>.npy`` (a plain uint64 array, no pickle)."""
        table = self.table(n)
        path = Path(directory) / INDEX_FILE.format(n=n)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, table, allow_pickle=False)

        return atomic_write_with(path, write)

    @classmethod
    def load(cls, directory: str | Path, n: int = COPY_LIMIT) -> NGramIndex:
        """The index saved by :meth:`save` in ``directory`` (only length ``n`` can be queried).

        Raises:
            AigcError: no such file, or a file that is not a uint64 array.
        """
        path = Path(directory) / INDEX_FILE.format(n=n)
        if not path.is_file():
            raise AigcError(f"no copy index {path.name} in {directory}; run `aigc data prepare-music` or pass --corpus-data")
        table = np.load(path, allow_pickle=False)
        if table.dtype != np.uint64 or table.ndim != 1:
            raise AigcError(f"{path} is not a copy index (a 1-D uint64 array); rebuild it with `aigc data prepare-music`")
        index = cls()
        index._tables[n] = table
        return index
