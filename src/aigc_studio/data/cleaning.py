"""Text cleaning, de-duplication and length filtering, one record at a time with a count for every step.

A record is a tuple of fields: ``(source, target)`` for conditional data or ``(text,)`` for plain text.
:class:`RecordCleaner` applies, in this order:

1. ``normalize_text`` to every field: line endings to ``\\n``, Unicode NFKC except for full-width
   punctuation (kept as written, because CJK text is written with it), control characters (except ``\\n``
   and ``\\t``) and zero-width characters removed, surrounding whitespace stripped;
2. ``empty``: drop records with an empty field;
3. ``exact_duplicates``: drop a record identical to an earlier one (after step 1);
4. ``normalized_duplicates``: drop a record equal to an earlier one under :func:`dedup_key` (case, spacing
   and punctuation ignored);
5. ``min_chars`` / ``max_chars``: drop records whose last field (target or text) is too short or too long.

Duplicates are remembered as 16-byte digests, not strings, so memory stays small on large corpora.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any

from aigc_studio.errors import AigcError

# Zero-width space, non-joiner, joiner, word joiner, and the byte-order mark used as a zero-width no-break space.
ZERO_WIDTH_CHARACTERS = "\u200b\u200c\u200d\u2060\ufeff"
_KEPT_CONTROLS = {"\n", "\t"}
# Category Cc is exactly U+0000..U+001F and U+007F..U+009F.
_REMOVED = {
    code_point: None
    for code_point in (*range(0x00, 0x20), *range(0x7F, 0xA0), *map(ord, ZERO_WIDTH_CHARACTERS))
    if chr(code_point) not in _KEPT_CONTROLS
}

CLEANING_STEPS: tuple[str, ...] = ("empty", "exact_duplicates", "normalized_duplicates", "min_chars", "max_chars")

# NFKC folds full-width punctuation to ASCII ("，" to ","), which corrupts Chinese, Japanese and Korean copy:
# there the full-width marks are the correct ones. So every full-width copy of an ASCII punctuation mark or
# symbol (U+FF01..U+FF5E except letters and digits) is kept, and so is "…" (the Chinese ellipsis is "……",
# which NFKC would turn into six dots). Full-width letters and digits are Latin text typed in a CJK input
# mode and still fold to ASCII. The rule ignores context so that the same character always cleans the same way.
KEPT_FULL_WIDTH_PUNCTUATION = (
    "".join(chr(code_point) for code_point in range(0xFF01, 0xFF5F) if not chr(code_point).isalnum()) + "\u2026"
)
_KEPT_PUNCTUATION_RUNS = re.compile(f"([{re.escape(KEPT_FULL_WIDTH_PUNCTUATION)}]+)")


def normalize_text(text: str) -> str:
    """Canonical form of ``text``: NFKC (full-width punctuation kept), ``\\n`` line endings, no control or
    zero-width characters, stripped.

    Examples: ``"Ｃａｆé\\u200b\\r\\n"`` becomes ``"Café"`` (full-width letters folded, zero-width space and
    line ending removed); ``"ＸＬ码，１００％棉！"`` becomes ``"XL码，100％棉！"`` (letters and digits folded,
    the full-width punctuation of :data:`KEPT_FULL_WIDTH_PUNCTUATION` kept).
    """
    # Convert Windows and old-Mac line endings first so removing "\r" never glues two lines together.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _nfkc_keeping_full_width_punctuation(text).translate(_REMOVED).strip()


def remove_control_characters(text: str) -> str:
    """``text`` without control and zero-width characters (``\n`` and ``\t`` stay).

    Prepared data never holds them, but an undertrained byte-level model can still write one (an ESC byte,
    say); content handed to a user must not.
    """
    return text.translate(_REMOVED)


def _nfkc_keeping_full_width_punctuation(text: str) -> str:
    # Splitting on a capturing group puts the kept runs at the odd positions. Normalising the pieces apart
    # equals normalising the whole text: the kept marks are never part of a composition.
    pieces = _KEPT_PUNCTUATION_RUNS.split(text)
    return "".join(piece if position % 2 else unicodedata.normalize("NFKC", piece) for position, piece in enumerate(pieces))


@functools.cache
def _punctuation_table() -> dict[int, None]:
    # Built once (about 0.3 s): every code point whose Unicode category is punctuation (P*).
    return {code_point: None for code_point in range(sys.maxunicode + 1) if unicodedata.category(chr(code_point)).startswith("P")}


def dedup_key(text: str) -> str:
    """The text two near-identical records share: NFKC, casefolded, punctuation removed, whitespace collapsed.

    ``"The Eagle is cheap!"`` and ``"the  eagle is cheap"`` have the same key, and so have ``"a＋b"`` and
    ``"a+b"`` (full NFKC here, so a full-width symbol and its ASCII form count as the same).
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().translate(_punctuation_table()).split())


def _digest(fields: tuple[str, ...]) -> bytes:
    # "\x00" cannot occur in a cleaned field (it is a control character), so the join is unambiguous.
    return hashlib.blake2b("\x00".join(fields).encode("utf-8"), digest_size=16).digest()


@dataclass
class CleaningConfig:
    """What to keep.

    Attributes:
        min_chars: drop records whose target (or text) has fewer characters than this after normalising.
        max_chars: drop records whose target (or text) has more characters than this; ``None`` keeps all.
        deduplicate: drop exact and normalised duplicates.
    """

    min_chars: int = 1
    max_chars: int | None = None
    deduplicate: bool = True

    def validate(self) -> None:
        """Raise :class:`AigcError` naming the flag when a limit is out of range."""
        if self.min_chars < 0:
            raise AigcError(f"--min-chars must be >= 0, got {self.min_chars}", param="min_chars")
        if self.max_chars is not None and self.max_chars < max(self.min_chars, 1):
            raise AigcError(
                f"--max-chars ({self.max_chars}) must be at least --min-chars ({self.min_chars}) and 1", param="max_chars"
            )


class RecordCleaner:
    """Cleans a stream of records, remembering what it has seen and counting what each step removes.

    Args:
        config: the limits and switches; see :class:`CleaningConfig`.
    """

    def __init__(self, config: CleaningConfig | None = None) -> None:
        self.config = config or CleaningConfig()
        self.config.validate()
        self.records_read = 0
        self.removed = dict.fromkeys(CLEANING_STEPS, 0)
        self._seen_exact: set[bytes] = set()
        self._seen_normalized: set[bytes] = set()

    def clean(self, fields: tuple[str, ...]) -> tuple[str, ...] | None:
        """Return the cleaned record, or ``None`` when one of the steps drops it (and count that step)."""
        self.records_read += 1
        cleaned = tuple(normalize_text(field) for field in fields)
        if not all(cleaned):
            return self._drop("empty")
        if self.config.deduplicate:
            exact = _digest(cleaned)
            if exact in self._seen_exact:
                return self._drop("exact_duplicates")
            self._seen_exact.add(exact)
            normalized = _digest(tuple(dedup_key(field) for field in cleaned))
            if normalized in self._seen_normalized:
                return self._drop("normalized_duplicates")
            self._seen_normalized.add(normalized)
        length = len(cleaned[-1])
        if length < self.config.min_chars:
            return self._drop("min_chars")
        if self.config.max_chars is not None and length > self.config.max_chars:
            return self._drop("max_chars")
        return cleaned

    def _drop(self, step: str) -> None:
        self.removed[step] += 1
        return None

    @property
    def records_kept(self) -> int:
        return self.records_read - sum(self.removed.values())

    def report(self) -> list[dict[str, Any]]:
        """Counts before and after each step, in order: ``[{"step", "before", "after", "removed"}, ...]``."""
        steps = []
        remaining = self.records_read
        for step in CLEANING_STEPS:
            steps.append({"step": step, "before": remaining, "after": remaining - self.removed[step], "removed": self.removed[step]})
            remaining -= self.removed[step]
        return steps

    def raise_if_empty(self, what: str = "records") -> None:
        """Raise :class:`AigcError` when nothing survived, naming the step that removed the last records.

        Raises:
            AigcError: no records were read at all, or a cleaning step removed everything that was left.
        """
        if self.records_read == 0:
            raise AigcError(f"no {what} found in the inputs; check that the files hold data rows")
        if self.records_kept > 0:
            return
        last_step = next(step for step in reversed(self.report()) if step["removed"] > 0)
        hints = {
            "empty": "check the column flags: the chosen columns are empty in every row",
            "exact_duplicates": "the inputs repeat one record",
            "normalized_duplicates": "the inputs repeat one record",
            "min_chars": f"lower --min-chars (now {self.config.min_chars})",
            "max_chars": f"raise --max-chars (now {self.config.max_chars})",
        }
        raise AigcError(
            f"no {what} left after cleaning: the {last_step['step']} filter removed the last "
            f"{last_step['removed']} of {self.records_read}; {hints[last_step['step']]}"
        )
