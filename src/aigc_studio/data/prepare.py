"""``aigc data prepare``: raw files in, a dataset directory (token shards + tokenizer + dataset.json) out.

Commands this implements (see docs/data.md)::

    aigc data prepare ../shared/data/e2e/trainset.csv --source-col mr --target-col ref --out var/data/e2e
    aigc data prepare ../shared/data/e2e/trainset.csv --val-input ../shared/data/e2e/devset.csv \
        --source-col mr --target-col ref --out var/data/e2e-dev
    aigc data prepare ../shared/data/tinyshakespeare/input.txt --tokenizer char --out var/data/shakespeare

The steps, in order:

1. open the inputs and choose the columns (records: source + target; text: one text column or .txt files);
2. stream every row through :class:`~aigc_studio.data.cleaning.RecordCleaner` (normalise, de-duplicate,
   filter by length), keeping only the cleaned strings; validation inputs get a cleaner of their own, so
   de-duplication stays within each split;
3. split deterministically. With validation inputs, they are the validation split, and training records
   whose source also occurs there are dropped. Otherwise records are grouped by source and a seeded share
   of the sources is held out, and plain text is cut contiguously (the last ``val_fraction`` of the
   concatenated characters is validation, as nanoGPT does). Either way a source never lands in both splits;
4. train the tokenizer on the training split only, so validation numbers are honest;
5. tokenise with ``encode_batch`` and write token shards (numpy memmaps) plus, for records, their index;
6. write ``tokenizer.json`` and, last of all, ``dataset.json`` (a directory without it is not a dataset,
   so a crash midway never leaves something that looks complete).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aigc_studio.data.cleaning import CleaningConfig, RecordCleaner
from aigc_studio.data.loading import INPUT_FORMATS, InputTable, open_input
from aigc_studio.data.tokenizer import SPECIAL_TOKENS, TOKENIZER_KINDS, TextTokenizer, train_tokenizer
from aigc_studio.content.delexicalize import delexicalize
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_json, atomic_write_with, sha256_file

DATASET_FORMAT_VERSION = 1
DATASET_INFO_FILE = "dataset.json"
TOKENIZER_FILE = "tokenizer.json"
SPLITS: tuple[str, ...] = ("train", "val")
# Rows of a records index: where the record starts in its .bin, how many tokens it has, and the position
# (relative to the record start) of its first target token, i.e. just after <sep>.
INDEX_COLUMNS: tuple[str, ...] = ("offset", "length", "target_start")
_ENCODE_CHUNK = 2048  # records per encode_batch call: big enough for the Rust threads, small enough for memory


@dataclass
class PrepareConfig:
    """Everything ``aigc data prepare`` can be told; defaults suit a first run.

    Attributes:
        input_format: ``auto`` (by file extension) or ``csv``, ``tsv``, ``jsonl``, ``txt`` for every input.
        source_column: column holding the condition (attributes, instruction) of conditional records.
        target_column: column holding the content to generate; needs ``source_column``.
        text_column: column holding plain text (language-model data); excludes the two above.
        group_column: records column whose equal values always land in the same split (a tune's id when
            several records share a source, as in ``aigc data prepare-music``); ``None`` groups by source.
        min_chars: drop records whose target (or text) is shorter than this, after normalising.
        max_chars: drop records whose target (or text) is longer than this; ``None`` keeps everything.
        deduplicate: drop exact and normalised duplicates.
        tokenizer: ``bpe`` (byte-level, any language) or ``char`` (one token per character).
        vocab_size: BPE vocabulary size including the 16 special and 256 byte tokens (ignored by ``char``).
        val_fraction: share held out for validation, in (0, 0.5]; unused when ``val_inputs`` are given.
        val_inputs: files that are the validation split instead of a ``val_fraction`` share of the inputs
            (E2E's devset.csv), read with the same format and column flags and cleaned the same way.
            Training records whose source also occurs in them are dropped, so no source is in both splits.
        seed: shuffles the unique sources before the records split.
        shard_tokens: tokens per shard file; a record never spans two shards, so one longer than this gets a
            shard of its own.
        overwrite: replace a dataset already prepared in the output directory.
        delexicalize: record slots whose values become placeholders in source and target (E2E's ``name``
            and ``near``), so the model learns where a value goes instead of how to spell it; see
            :mod:`aigc_studio.content.delexicalize`.
    """

    # inputs
    input_format: str = "auto"
    source_column: str | None = None
    target_column: str | None = None
    text_column: str | None = None
    group_column: str | None = None
    # cleaning
    min_chars: int = 1
    max_chars: int | None = None
    deduplicate: bool = True
    # tokenizer
    tokenizer: str = "bpe"
    vocab_size: int = 8192
    # split
    val_fraction: float = 0.1
    val_inputs: list[str] = field(default_factory=list)
    seed: int = 1337
    # output
    shard_tokens: int = 100_000_000
    overwrite: bool = False
    # records
    delexicalize: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Paths become strings so the config stays JSON: dataset.json records it.
        self.val_inputs = [str(path) for path in self.val_inputs]

    @property
    def split_method(self) -> str:
        """``"val_inputs"`` when validation files are given, else ``"fraction"``."""
        return "val_inputs" if self.val_inputs else "fraction"

    def validate(self) -> None:
        """Check every field that can be checked before reading data.

        Raises:
            AigcError: a value out of range or a contradictory combination of column flags, naming the flag.
        """
        if self.input_format not in INPUT_FORMATS:
            raise AigcError(f"unknown input format {self.input_format!r}; choose one of: {', '.join(INPUT_FORMATS)}", param="format")
        if (self.source_column is None) != (self.target_column is None):
            raise AigcError("--source-col and --target-col go together; pass both (or --text-col for plain text)", param="source_col")
        if self.text_column is not None and self.source_column is not None:
            raise AigcError("pass either --text-col (plain text) or --source-col/--target-col (records), not both", param="text_col")
        if self.group_column is not None and self.source_column is None:
            raise AigcError("a group column splits source/target records; pass --source-col and --target-col with it", param="group_col")
        if self.tokenizer not in TOKENIZER_KINDS:
            raise AigcError(f"unknown tokenizer {self.tokenizer!r}; choose one of: {', '.join(TOKENIZER_KINDS)}", param="tokenizer")
        minimum_vocab = len(SPECIAL_TOKENS) + 256
        if self.tokenizer == "bpe" and self.vocab_size < minimum_vocab:
            raise AigcError(f"--vocab-size {self.vocab_size} is too small for byte-level BPE; use at least {minimum_vocab}", param="vocab_size")
        if not 0.0 < self.val_fraction <= 0.5:
            raise AigcError(f"--val-fraction must be in (0, 0.5], got {self.val_fraction}", param="val_fraction")
        if self.seed < 0:
            raise AigcError(f"--seed must be >= 0, got {self.seed}", param="seed")
        if self.shard_tokens < 1:
            raise AigcError(f"--shard-tokens must be >= 1, got {self.shard_tokens}", param="shard_tokens")
        self.cleaning_config().validate()

    def cleaning_config(self) -> CleaningConfig:
        return CleaningConfig(min_chars=self.min_chars, max_chars=self.max_chars, deduplicate=self.deduplicate)


@dataclass
class _Corpus:
    """The cleaned data of every input: records as parallel source/target lists, or text documents."""

    sources: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # only with PrepareConfig.group_column
    documents: list[str] = field(default_factory=list)


@dataclass
class _TextPiece:
    """A document, or the part of one on one side of the train/val cut."""

    text: str
    starts_document: bool = True
    ends_document: bool = True


def prepare_dataset(inputs: Sequence[str | Path], out_dir: str | Path, config: PrepareConfig | None = None) -> dict[str, Any]:
    """Clean, split, tokenise and shard ``inputs`` into the dataset directory ``out_dir``.

    Args:
        inputs: one or more .csv/.tsv/.jsonl/.json/.txt files (all records, or all plain text): the training
            data, and the validation data too unless ``config.val_inputs`` names validation files.
        out_dir: the dataset directory to create (see docs/architecture.md for its layout).
        config: what to keep and how to tokenise; defaults to :class:`PrepareConfig()`.

    Returns:
        The content written to ``dataset.json``.

    Raises:
        AigcError: a bad flag, a missing or undecodable file, a file given both as training and validation
            input, an unknown column (the message lists the columns found), no data left after cleaning
            (naming the filter that removed the rest), too little data to split, no training record left
            once the validation sources are removed, or a non-empty output directory without ``overwrite``.
    """
    config = config or PrepareConfig()
    config.validate()
    if not inputs:
        raise AigcError("no input files given; pass at least one .csv, .tsv, .jsonl or .txt file", param="inputs")
    out_dir = Path(out_dir)
    # 1. open the inputs and choose the columns
    tables = [open_input(path, config.input_format) for path in inputs]
    val_tables = [open_input(path, config.input_format) for path in config.val_inputs]
    _check_inputs_are_distinct(tables, val_tables)
    dataset_format, columns = _choose_columns(tables + val_tables, config)
    unit = "records" if dataset_format == "records" else "documents"
    _check_output_directory(out_dir, config.overwrite)
    # 2. read and clean, one row at a time
    cleaner = RecordCleaner(config.cleaning_config())
    corpus, input_reports = _read_corpus(tables, dataset_format, columns, cleaner)
    cleaner.raise_if_empty(unit)
    val_corpus, val_input_reports, val_cleaning = None, [], None
    if val_tables:
        # A cleaner of its own, so de-duplication stays within each split (step 3 keeps sources apart).
        val_cleaner = RecordCleaner(config.cleaning_config())
        val_corpus, val_input_reports = _read_corpus(val_tables, dataset_format, columns, val_cleaner)
        val_cleaner.raise_if_empty(f"validation {unit}")
        val_cleaning = {"steps": val_cleaner.report(), "num_records_read": val_cleaner.records_read,
                        "num_records_kept": val_cleaner.records_kept}
    if config.delexicalize:
        if dataset_format != "records":
            raise AigcError("--delexicalize applies to source/target records; drop it for plain text", param="delexicalize")
        for part in (corpus, val_corpus):
            if part is not None:
                _delexicalize_corpus(part, config.delexicalize)
    # 3. split
    overlap = None
    if dataset_format == "records":
        train, val, overlap = _split_records(corpus, val_corpus, config)
    else:
        train, val = _split_text(corpus, val_corpus, config)
    # Only now that the new data is known to be usable does a previous dataset there go.
    _clear_output_directory(out_dir)
    # 4-5. train the tokenizer on the training split, tokenise and write the shards
    if dataset_format == "records":
        tokenizer, splits = _write_records(train, val, out_dir, config)
    else:
        tokenizer, splits = _write_text(train, val, out_dir, config)
    # 6. tokenizer.json, then dataset.json last
    tokenizer.save(out_dir / TOKENIZER_FILE)
    info = {
        "format_version": DATASET_FORMAT_VERSION,
        "format": dataset_format,
        "columns": columns,
        "inputs": input_reports,
        "val_inputs": val_input_reports,
        "cleaning": cleaner.report(),
        "num_records_read": cleaner.records_read,
        "num_records_kept": cleaner.records_kept,
        "val_cleaning": val_cleaning,
        "tokenizer": {
            "kind": config.tokenizer,
            "vocab_size": tokenizer.vocab_size,
            "requested_vocab_size": config.vocab_size if config.tokenizer == "bpe" else None,
            "file": TOKENIZER_FILE,
        },
        "delexicalized_slots": list(config.delexicalize),
        "special_tokens": {"pad": tokenizer.pad_id, "bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "sep": tokenizer.sep_id},
        "dtype": _token_dtype(tokenizer.vocab_size).__name__,
        "splits": splits,
        "split_method": config.split_method,
        "overlap": overlap,
        "seed": config.seed,
        "val_fraction": config.val_fraction if config.split_method == "fraction" else None,
        "config": asdict(config),
    }
    atomic_write_json(out_dir / DATASET_INFO_FILE, info)
    return info


def _choose_columns(tables: list[InputTable], config: PrepareConfig) -> tuple[str, dict[str, str]]:
    """Decide records versus text and which columns play which role; check every input has them."""
    plain_text = [table for table in tables if table.format == "txt"]
    tabular = [table for table in tables if table.format != "txt"]
    if config.source_column is not None:
        columns = {"source": config.source_column, "target": config.target_column}
    elif config.text_column is not None:
        columns = {"text": config.text_column}
    elif not tabular:
        columns = {"text": "text"}
    else:
        found = tabular[0].columns
        if "source" in found and "target" in found:
            columns = {"source": "source", "target": "target"}
        elif "text" in found:
            columns = {"text": "text"}
        else:
            raise AigcError(
                f"cannot tell which columns to use in {tabular[0].path}; columns are: {', '.join(found)}; "
                "pass --source-col and --target-col (records) or --text-col (plain text)",
                param="source_col",
            )
    if config.group_column is not None and "source" in columns:
        columns["group"] = config.group_column
    dataset_format = "records" if "source" in columns else "text"
    if dataset_format == "records" and plain_text:
        raise AigcError(f"{plain_text[0].path} is plain text (one document per .txt file) and has no source/target columns; "
                        "prepare .txt files without --source-col/--target-col")
    for table in tabular:
        for role, column in columns.items():
            if column not in table.columns:
                raise AigcError(
                    f"column {column!r} not found in {table.path}; columns are: {', '.join(table.columns)}",
                    param=f"{role}_col",
                )
    return dataset_format, columns


def _delexicalize_corpus(corpus: _Corpus, slots: Sequence[str]) -> None:
    for index, (source, target) in enumerate(zip(corpus.sources, corpus.targets)):
        corpus.sources[index], corpus.targets[index], _ = delexicalize(source, target, slots)


def _check_inputs_are_distinct(tables: list[InputTable], val_tables: list[InputTable]) -> None:
    """Refuse a file given both as training and validation input: every record would then be in both splits."""
    training_files = {table.path.resolve() for table in tables}
    for table in val_tables:
        if table.path.resolve() in training_files:
            raise AigcError(
                f"{table.path} is given both as a training input and as --val-input; pass it only once", param="val_inputs"
            )


def _check_output_directory(out_dir: Path, overwrite: bool) -> None:
    """Refuse early (before reading any data) an output path we must not write into."""
    if out_dir.exists() and not out_dir.is_dir():
        raise AigcError(f"output path {out_dir} is a file; pass a directory to --out", param="out")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise AigcError(f"output directory {out_dir} is not empty; choose a new --out or pass --overwrite", param="out")
        if not (out_dir / DATASET_INFO_FILE).is_file():
            raise AigcError(f"output directory {out_dir} is not empty and holds no prepared dataset; choose a new --out", param="out")


def _clear_output_directory(out_dir: Path) -> None:
    """Create ``out_dir``, removing the files of a dataset prepared there before (and nothing else)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # dataset.json goes first so an interrupted run never leaves an old description over new shards.
    (out_dir / DATASET_INFO_FILE).unlink(missing_ok=True)
    for pattern in (TOKENIZER_FILE, *(f"{split}-*.bin" for split in SPLITS), *(f"{split}-*.idx.npy" for split in SPLITS)):
        for old_file in out_dir.glob(pattern):
            old_file.unlink()


def _read_corpus(
    tables: list[InputTable], dataset_format: str, columns: dict[str, str], cleaner: RecordCleaner
) -> tuple[_Corpus, list[dict[str, Any]]]:
    corpus = _Corpus()
    reports = []
    for table in tables:
        rows_read = 0
        for _, row in table.rows():
            rows_read += 1
            if dataset_format == "records":
                cleaned = cleaner.clean((row.get(columns["source"], ""), row.get(columns["target"], "")))
                if cleaned is not None:
                    corpus.sources.append(cleaned[0])
                    corpus.targets.append(cleaned[1])
                    if "group" in columns:
                        corpus.groups.append(str(row.get(columns["group"], "")))
            else:
                # A .txt file is one document whatever --text-col says: its only column is "text".
                text = row["text"] if table.format == "txt" else row.get(columns["text"], "")
                cleaned = cleaner.clean((text,))
                if cleaned is not None:
                    corpus.documents.append(cleaned[0])
        reports.append({
            "path": str(table.path),
            "format": table.format,
            "rows": rows_read,
            "bytes": table.path.stat().st_size,
            "sha256": sha256_file(table.path),
        })
    return corpus, reports


def split_records_by_source(sources: Sequence[str], val_fraction: float, seed: int) -> np.ndarray:
    """Which records are validation: whole groups of records sharing a source, chosen by a seeded shuffle.

    The unique sources are sorted (so the split does not depend on input order), shuffled with ``seed``, and
    the first ``round(val_fraction * number_of_sources)`` of them (at least one) go to validation. Grouping
    keeps validation honest: a model cannot score by recalling another reference for the same source.

    Args:
        sources: the source of every record.
        val_fraction: share of unique sources held out, in (0, 0.5].
        seed: shuffle seed.

    Returns:
        A boolean array, True where the record is in the validation split.

    Raises:
        AigcError: fewer than two unique sources, so no grouped split is possible.
    """
    unique_sources = sorted(set(sources))
    if len(unique_sources) < 2:
        raise AigcError(
            f"all {len(sources)} records share one source, so no validation split can keep sources apart; "
            "add records with other sources"
        )
    order = np.random.default_rng(seed).permutation(len(unique_sources))
    num_val = min(max(1, round(val_fraction * len(unique_sources))), len(unique_sources) - 1)
    val_sources = {unique_sources[i] for i in order[:num_val]}
    return np.fromiter((source in val_sources for source in sources), dtype=bool, count=len(sources))


def split_text_documents(documents: Sequence[str], val_fraction: float) -> tuple[list[_TextPiece], list[_TextPiece]]:
    """Cut the concatenated documents so the last ``val_fraction`` of the characters is validation.

    As in nanoGPT the cut lands wherever the character count says, possibly inside a document: that
    document's head ends the training stream (without ``<eos>``) and its tail starts the validation stream
    (without ``<bos>``), exactly as if one token stream had been sliced.

    Returns:
        ``(train_pieces, val_pieces)``.

    Raises:
        AigcError: the text is too short to leave characters on both sides.
    """
    total_chars = sum(len(document) for document in documents)
    train_chars = int(total_chars * (1.0 - val_fraction))
    if train_chars <= 0 or train_chars >= total_chars:
        raise AigcError(f"only {total_chars} characters of text: too little to hold out {val_fraction:.0%} for validation; add text")
    train: list[_TextPiece] = []
    val: list[_TextPiece] = []
    position = 0
    for document in documents:
        end = position + len(document)
        if end <= train_chars:
            train.append(_TextPiece(document))
        elif position >= train_chars:
            val.append(_TextPiece(document))
        else:
            cut = train_chars - position
            train.append(_TextPiece(document[:cut], ends_document=False))
            val.append(_TextPiece(document[cut:], starts_document=False))
        position = end
    return train, val


def _token_dtype(vocab_size: int) -> type[np.unsignedinteger]:
    return np.uint16 if vocab_size <= 65535 else np.uint32


class _ShardWriter:
    """Appends token sequences to ``{split}-NNNNN.bin`` shards (and ``.idx.npy`` indexes for records)."""

    def __init__(self, out_dir: Path, split: str, dtype: type[np.unsignedinteger], shard_tokens: int, with_index: bool) -> None:
        self.out_dir, self.split, self.dtype = out_dir, split, dtype
        self.shard_tokens, self.with_index = shard_tokens, with_index
        self.shard_files: list[str] = []
        self.index_files: list[str] = []
        self.num_tokens = 0
        self.num_sequences = 0
        self._pieces: list[np.ndarray] = []
        self._index_rows: list[tuple[int, int, int]] = []
        self._buffered = 0

    def add_record(self, ids: list[int], target_start: int) -> None:
        """Append one record; it starts a new shard if it would not fit in the current one."""
        if self._buffered and self._buffered + len(ids) > self.shard_tokens:
            self._flush()
        self._index_rows.append((self._buffered, len(ids), target_start))
        self._append(np.asarray(ids, dtype=self.dtype))
        self.num_sequences += 1

    def add_stream(self, ids: list[int]) -> None:
        """Append tokens to the text stream, filling each shard to exactly ``shard_tokens``."""
        tokens = np.asarray(ids, dtype=self.dtype)
        while len(tokens):
            room = self.shard_tokens - self._buffered
            self._append(tokens[:room])
            tokens = tokens[room:]
            if self._buffered == self.shard_tokens:
                self._flush()
        self.num_sequences += 1

    def _append(self, tokens: np.ndarray) -> None:
        self._pieces.append(tokens)
        self._buffered += len(tokens)
        self.num_tokens += len(tokens)

    def _flush(self) -> None:
        stem = f"{self.split}-{len(self.shard_files):05d}"
        tokens = np.concatenate(self._pieces) if self._pieces else np.zeros(0, dtype=self.dtype)
        atomic_write_with(self.out_dir / f"{stem}.bin", tokens.tofile)
        self.shard_files.append(f"{stem}.bin")
        if self.with_index:
            index = np.asarray(self._index_rows, dtype=np.int64).reshape(-1, len(INDEX_COLUMNS))
            atomic_write_with(self.out_dir / f"{stem}.idx.npy", lambda path: _save_npy(path, index))
            self.index_files.append(f"{stem}.idx.npy")
        self._pieces, self._index_rows, self._buffered = [], [], 0

    def finish(self) -> dict[str, Any]:
        """Write the last shard and return this split's entry for dataset.json."""
        if self._buffered or not self.shard_files:
            self._flush()
        summary: dict[str, Any] = {"records": self.num_sequences, "tokens": self.num_tokens, "shards": self.shard_files}
        if self.with_index:
            summary["index"] = self.index_files
        return summary


def _save_npy(path: Path, array: np.ndarray) -> None:
    # Through an open handle: given a path, np.save would append ".npy" to the temporary name.
    with open(path, "wb") as handle:
        np.save(handle, array)


def _select_records(corpus: _Corpus, keep: np.ndarray) -> _Corpus:
    rows = np.flatnonzero(keep)
    return _Corpus(sources=[corpus.sources[row] for row in rows], targets=[corpus.targets[row] for row in rows],
                   groups=[corpus.groups[row] for row in rows] if corpus.groups else [])


def _split_records(
    corpus: _Corpus, val_corpus: _Corpus | None, config: PrepareConfig
) -> tuple[_Corpus, _Corpus, dict[str, int] | None]:
    """``(train, val, overlap)``: a grouped ``val_fraction`` split, or the validation inputs as they are.

    With validation inputs, ``overlap`` counts the validation sources that also occur in the training
    inputs and the training records dropped for sharing them; without, it is ``None``.

    Raises:
        AigcError: every training record has a source that the validation inputs also have.
    """
    if val_corpus is None:
        # With a group column the groups (e.g. tunes) are held out whole instead of the sources.
        is_val = split_records_by_source(corpus.groups or corpus.sources, config.val_fraction, config.seed)
        return _select_records(corpus, ~is_val), _select_records(corpus, is_val), None
    val_sources = set(val_corpus.sources)
    in_val = np.fromiter((source in val_sources for source in corpus.sources), dtype=bool, count=len(corpus.sources))
    if in_val.all():
        raise AigcError(
            f"all {len(in_val)} training records have a source that the validation inputs also have, so none is left "
            "to train on; pass other --val-input files, or --val-fraction to split the training inputs",
            param="val_inputs",
        )
    overlap = {
        "val_sources_in_train": len(val_sources & set(corpus.sources)),
        "train_records_dropped": int(in_val.sum()),
    }
    return _select_records(corpus, ~in_val), val_corpus, overlap


def _split_text(corpus: _Corpus, val_corpus: _Corpus | None, config: PrepareConfig) -> tuple[list[_TextPiece], list[_TextPiece]]:
    """``(train, val)``: the contiguous ``val_fraction`` tail split, or every document of each side whole."""
    if val_corpus is None:
        return split_text_documents(corpus.documents, config.val_fraction)
    return [_TextPiece(document) for document in corpus.documents], [_TextPiece(document) for document in val_corpus.documents]


def _write_records(train: _Corpus, val: _Corpus, out_dir: Path, config: PrepareConfig) -> tuple[TextTokenizer, dict[str, Any]]:
    def training_texts() -> Iterator[str]:
        for source, target in zip(train.sources, train.targets):
            yield source
            yield target

    tokenizer = train_tokenizer(training_texts(), kind=config.tokenizer, vocab_size=config.vocab_size)
    dtype = _token_dtype(tokenizer.vocab_size)
    splits = {}
    for split, records in (("train", train), ("val", val)):
        writer = _ShardWriter(out_dir, split, dtype, config.shard_tokens, with_index=True)
        for start in range(0, len(records.sources), _ENCODE_CHUNK):
            source_ids = tokenizer.encode_batch(records.sources[start : start + _ENCODE_CHUNK])
            target_ids = tokenizer.encode_batch(records.targets[start : start + _ENCODE_CHUNK])
            for source, target in zip(source_ids, target_ids):
                # <bos> source <sep> target <eos>; the loss starts at the first target token.
                ids = [tokenizer.bos_id, *source, tokenizer.sep_id, *target, tokenizer.eos_id]
                writer.add_record(ids, target_start=len(source) + 2)
        splits[split] = writer.finish()
        splits[split]["sources"] = len(set(records.sources))
    return tokenizer, splits


def _write_text(
    train_pieces: list[_TextPiece], val_pieces: list[_TextPiece], out_dir: Path, config: PrepareConfig
) -> tuple[TextTokenizer, dict[str, Any]]:
    tokenizer = train_tokenizer((piece.text for piece in train_pieces), kind=config.tokenizer, vocab_size=config.vocab_size)
    dtype = _token_dtype(tokenizer.vocab_size)
    splits = {}
    for split, pieces in (("train", train_pieces), ("val", val_pieces)):
        writer = _ShardWriter(out_dir, split, dtype, config.shard_tokens, with_index=False)
        for start in range(0, len(pieces), _ENCODE_CHUNK):
            chunk = pieces[start : start + _ENCODE_CHUNK]
            for piece, ids in zip(chunk, tokenizer.encode_batch([piece.text for piece in chunk])):
                # <bos> document <eos>, except where the train/val cut runs through the document.
                writer.add_stream([tokenizer.bos_id] * piece.starts_document + ids + [tokenizer.eos_id] * piece.ends_document)
        splits[split] = writer.finish()
    return tokenizer, splits
