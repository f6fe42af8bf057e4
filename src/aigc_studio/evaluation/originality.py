"""Originality: how much of a text is copied from a training corpus, through a hashed n-gram index.

:class:`NgramIndex` holds the 64-bit hash of every token n-gram (n = 8 by default) of a corpus in one
sorted, de-duplicated ``uint64`` numpy array. Lookups are binary searches (``np.searchsorted``), and the
saved array is memory-mapped on load, so even a large corpus's index opens instantly and costs no RAM
until pages are touched. Tokens are :func:`~aigc_studio.evaluation.text.tokenize`'s: lowercase words for
English, characters for Chinese.

Hashing: each token gets a stable 64-bit BLAKE2b hash (Python's ``hash`` changes per process); an n-gram's
hash is the polynomial ``sum(token_hash[j] * P**(n-1-j))`` modulo 2**64, computed for all positions at once
with numpy. Two different n-grams share a hash with probability about 2**-64 per pair: negligible.

Longest copied span (an approximation): a span of ``L >= n`` tokens is reported as copied when all of its
``L - n + 1`` consecutive n-grams occur in the corpus. Those n-grams may come from different corpus texts,
so the span can be overestimated where two copied pieces overlap by ``n - 1`` tokens; copies shorter than
``n`` tokens are not seen (the span is then 0). An exact answer needs a suffix array of the corpus; for
spotting memorised training text, the n-gram chain is the usual practical test.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.text import tokenize
from aigc_studio.fileio import atomic_write_json, atomic_write_with, require_file

INDEX_FORMAT = "aigc-ngram-index"
INDEX_VERSION = 1
HASHES_FILE = "ngrams.npy"
META_FILE = "ngram_index.json"
# An odd 64-bit multiplier (FNV-1a's prime) for the polynomial n-gram hash.
_MULTIPLIER = np.uint64(0x100000001B3)


@lru_cache(maxsize=1 << 18)
def _token_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """The uint64 hash of every token n-gram of ``text``, in order (empty when it has fewer than ``n`` tokens)."""
    tokens = tokenize(text)
    count = len(tokens) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    token_hashes = np.fromiter((_token_hash(token) for token in tokens), dtype=np.uint64, count=len(tokens))
    hashes = np.zeros(count, dtype=np.uint64)
    for offset in range(n):  # Horner's rule over the window, vectorised across positions; uint64 wraps mod 2**64
        hashes = hashes * _MULTIPLIER + token_hashes[offset : offset + count]
    return hashes


def _check_n(n: int) -> None:
    if n < 1:
        raise AigcError(f"n-gram size must be at least 1, got {n}", param="n")


class NgramIndex:
    """The set of hashed token n-grams of a corpus (see the module docstring).

    Args:
        hashes: sorted, unique uint64 n-gram hashes (a memory map after :meth:`load`).
        n: the n-gram size.
        num_texts: how many corpus texts were indexed (for reports).
    """

    def __init__(self, hashes: np.ndarray, n: int, num_texts: int) -> None:
        _check_n(n)
        self.hashes = hashes
        self.n = n
        self.num_texts = num_texts

    def __len__(self) -> int:
        return len(self.hashes)

    @classmethod
    def build(cls, texts: Iterable[str], n: int = 8) -> NgramIndex:
        """Index every n-gram of ``texts`` (texts shorter than ``n`` tokens add nothing).

        Raises:
            AigcError: ``n`` < 1.
        """
        _check_n(n)
        per_text = [ngram_hashes(text, n) for text in texts]
        hashes = np.unique(np.concatenate(per_text)) if per_text else np.empty(0, dtype=np.uint64)
        return cls(hashes.astype(np.uint64, copy=False), n, len(per_text))

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``hashes`` occur in the index (binary search)."""
        if len(self.hashes) == 0:
            return np.zeros(len(hashes), dtype=bool)
        positions = np.searchsorted(self.hashes, hashes)
        positions = np.minimum(positions, len(self.hashes) - 1)
        return np.asarray(self.hashes[positions] == hashes)

    def save(self, directory: str | Path) -> Path:
        """Write ``ngrams.npy`` and ``ngram_index.json`` into ``directory`` atomically; returns the directory."""
        directory = Path(directory)

        def write_hashes(path: Path) -> None:
            with open(path, "wb") as handle:  # a handle, because np.save would append ".npy" to a path
                np.save(handle, np.ascontiguousarray(self.hashes, dtype=np.uint64))

        atomic_write_with(directory / HASHES_FILE, write_hashes)
        meta = {
            "format": INDEX_FORMAT, "version": INDEX_VERSION, "n": self.n,
            "num_texts": self.num_texts, "num_ngrams": len(self),
        }
        atomic_write_json(directory / META_FILE, meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> NgramIndex:
        """Open an index saved by :meth:`save`; the hash array is memory-mapped read-only.

        Raises:
            AigcError: a file is missing, or the directory holds something else or a damaged index.
        """
        directory = Path(directory)
        meta_path = require_file(directory / META_FILE, "n-gram index metadata")
        hashes_path = require_file(directory / HASHES_FILE, "n-gram index array")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AigcError(f"{meta_path} is not valid JSON; rebuild the index with NgramIndex.build(...).save(...)") from None
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT or meta.get("version") != INDEX_VERSION:
            raise AigcError(f"{meta_path} is not a version-{INDEX_VERSION} {INDEX_FORMAT} file; rebuild the index")
        try:
            hashes = np.load(hashes_path, mmap_mode="r")
        except ValueError as error:
            raise AigcError(f"{hashes_path} is not a readable numpy array ({error}); rebuild the index") from None
        if hashes.dtype != np.uint64 or hashes.ndim != 1 or len(hashes) != meta.get("num_ngrams"):
            raise AigcError(f"{hashes_path} does not match {meta_path} (damaged or mixed files); rebuild the index")
        return cls(hashes, int(meta["n"]), int(meta.get("num_texts", 0)))


def _copied_mask(text: str, index: NgramIndex, n: int | None) -> np.ndarray:
    if n is not None and n != index.n:
        raise AigcError(f"the index holds {index.n}-grams, not {n}-grams; pass n={index.n} or rebuild the index", param="n")
    return index.contains(ngram_hashes(text, index.n))


def copied_ngram_share(text: str, index: NgramIndex, n: int | None = None) -> float:
    """Share of the text's n-grams that occur in the indexed corpus.

    Args:
        text: the candidate.
        index: the corpus index.
        n: the n-gram size; defaults to (and must equal) ``index.n``.

    Returns:
        Share in [0, 1]; 0.0 for a text shorter than ``n`` tokens. Lower is more original.

    Raises:
        AigcError: ``n`` differs from the index's.
    """
    copied = _copied_mask(text, index, n)
    return float(copied.mean()) if len(copied) else 0.0


def longest_copied_span(text: str, index: NgramIndex) -> int:
    """Length in tokens of the longest span of ``text`` found in the corpus (n-gram chain approximation).

    The longest run of ``r`` consecutive n-grams that all occur in the index covers ``r + n - 1`` tokens;
    see the module docstring for what this over- and under-counts.

    Returns:
        0 when no n-gram is copied, else a length >= ``index.n``. Lower is more original.
    """
    copied = _copied_mask(text, index, None)
    longest = current = 0
    for hit in copied:
        current = current + 1 if hit else 0
        longest = max(longest, current)
    return longest + index.n - 1 if longest else 0
