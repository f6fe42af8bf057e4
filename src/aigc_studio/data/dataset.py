"""Reading a prepared dataset directory and producing training batches as a pure function of ``(seed, step)``.

Because a batch depends only on ``(seed, step)`` (never on how many batches were drawn before), resuming a
run needs nothing but the step counter, and any number of processes agree on the global batch: rank ``r`` of
``w`` takes rows ``r::w`` of it. See docs/architecture.md ("Dataset directory").

* **records** (``<bos> source <sep> target <eos>``): record ``i`` of the global sample stream is
  ``permutation(epoch)[i % N]`` with ``epoch = i // N`` and a permutation seeded by ``(seed, epoch)``. Rows
  are truncated to ``block_size + 1`` tokens and right-padded to the longest row of the global batch (at most
  ``block_size``) with ``<pad>`` inputs and ``-100`` targets. Targets are ``-100`` on everything before the
  first target token, so the loss covers ``target <eos>`` only.
* **text**: windows of ``block_size + 1`` tokens starting at offsets drawn by a generator seeded with
  ``(seed, step)``; the loss is taken everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigc_studio.data.prepare import DATASET_FORMAT_VERSION, DATASET_INFO_FILE, SPLITS, TOKENIZER_FILE
from aigc_studio.data.tokenizer import TextTokenizer
from aigc_studio.errors import AigcError

IGNORE_INDEX = -100  # the target value torch's cross-entropy skips


def read_dataset_info(directory: str | Path) -> dict[str, Any]:
    """Return the parsed ``dataset.json`` of a prepared dataset, after checking every file it lists exists.

    Raises:
        AigcError: the directory, ``dataset.json``, ``tokenizer.json`` or a shard is missing, or
            ``dataset.json`` is unreadable; the message names the file and says to run ``aigc data prepare``.
    """
    directory = Path(directory)
    prepare_hint = f"run `aigc data prepare INPUT... --out {directory}` to create it"
    if not directory.is_dir():
        raise AigcError(f"dataset directory not found: {directory}; {prepare_hint}")
    info_path = directory / DATASET_INFO_FILE
    if not info_path.is_file():
        raise AigcError(f"{directory} is not a prepared dataset: {DATASET_INFO_FILE} is missing; {prepare_hint}")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AigcError(f"{info_path} is not valid JSON ({error}); {prepare_hint} again") from None
    if not isinstance(info, dict) or info.get("format_version") != DATASET_FORMAT_VERSION or "splits" not in info:
        raise AigcError(f"{info_path} is not a dataset description of format version {DATASET_FORMAT_VERSION}; {prepare_hint} again")
    listed = [TOKENIZER_FILE]
    for split in info["splits"].values():
        listed += split["shards"] + split.get("index", [])
    for name in listed:
        if not (directory / name).is_file():
            raise AigcError(f"{directory} is an incomplete dataset: {name} is missing; {prepare_hint} again")
    return info


class TokenDataset:
    """One split (``"train"`` or ``"val"``) of a prepared dataset, memory-mapped.

    Args:
        directory: a directory written by ``aigc data prepare``.
        split: ``"train"`` or ``"val"``.

    Attributes:
        info: the parsed ``dataset.json``.
        format: ``"records"`` or ``"text"``.
        num_tokens: tokens in this split.
        num_records: records in this split (records format); documents or document parts for text.
        pad_id: the id used for padding inputs.

    Raises:
        AigcError: not a prepared dataset, or an unknown split.
    """

    def __init__(self, directory: str | Path, split: str = "train") -> None:
        if split not in SPLITS:
            raise AigcError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}", param="split")
        self.directory = Path(directory)
        self.info = read_dataset_info(self.directory)
        self.split = split
        self.format: str = self.info["format"]
        self.pad_id: int = self.info["special_tokens"]["pad"]
        split_info = self.info["splits"][split]
        dtype = np.dtype(self.info["dtype"])
        self._shards = [np.memmap(self.directory / name, dtype=dtype, mode="r") for name in split_info["shards"]]
        shard_sizes = np.array([len(shard) for shard in self._shards], dtype=np.int64)
        self._shard_starts = np.concatenate([[0], np.cumsum(shard_sizes)])
        self.num_tokens = int(self._shard_starts[-1])
        self.num_records: int = split_info["records"]
        if self.format == "records":
            # One row per record: (shard, offset, length, target_start), all shards together.
            rows = []
            for shard_number, name in enumerate(split_info["index"]):
                index = np.load(self.directory / name)
                rows.append(np.column_stack([np.full(len(index), shard_number, dtype=np.int64), index]))
            self._records = np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.int64)
            self.num_records = len(self._records)
        self._permutations: dict[tuple[int, int], np.ndarray] = {}
        self._tokenizer: TextTokenizer | None = None

    @property
    def tokenizer(self) -> TextTokenizer:
        """The dataset's tokenizer (loaded on first use)."""
        if self._tokenizer is None:
            self._tokenizer = TextTokenizer.from_file(self.directory / TOKENIZER_FILE)
        return self._tokenizer

    # ------------------------------------------------------------------ records
    def record(self, index: int) -> tuple[np.ndarray, int]:
        """Token ids of record ``index`` (``<bos> source <sep> target <eos>``) and its ``target_start``."""
        shard, offset, length, target_start = self._records[index]
        return np.asarray(self._shards[shard][offset : offset + length], dtype=np.int64), int(target_start)

    def decode_record(self, index: int) -> tuple[str, str]:
        """``(source, target)`` text of record ``index``, decoded with the dataset's tokenizer."""
        ids, target_start = self.record(index)
        source = self.tokenizer.decode(ids[1 : target_start - 1].tolist())
        target = self.tokenizer.decode(ids[target_start:-1].tolist())
        return source, target

    def _epoch_permutation(self, seed: int, epoch: int) -> np.ndarray:
        key = (seed, epoch)
        if key not in self._permutations:
            # A cache only: the permutation is a function of (seed, epoch), and two entries cover an epoch edge.
            if len(self._permutations) >= 2:
                self._permutations.pop(next(iter(self._permutations)))
            self._permutations[key] = np.random.default_rng((seed, epoch)).permutation(self.num_records)
        return self._permutations[key]

    def _record_batch(self, record_indices: np.ndarray, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = np.full((len(record_indices), width), self.pad_id, dtype=np.int64)
        targets = np.full((len(record_indices), width), IGNORE_INDEX, dtype=np.int64)
        for row, record_index in enumerate(record_indices):
            ids, target_start = self.record(int(record_index))
            ids = ids[: width + 1]
            length = len(ids) - 1
            inputs[row, :length] = ids[:-1]
            targets[row, :length] = ids[1:]
            # Position t predicts token t + 1; only predictions of target tokens (and <eos>) carry loss.
            targets[row, : max(0, min(target_start - 1, length))] = IGNORE_INDEX
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def _batch_width(self, record_indices: np.ndarray, block_size: int) -> int:
        longest = int(self._records[record_indices, 2].max()) - 1
        return min(block_size, longest)

    # ------------------------------------------------------------------ token stream (text)
    def read_tokens(self, start: int, length: int) -> np.ndarray:
        """``length`` tokens (int64) of the split's token stream from ``start``, across shard boundaries.

        Raises:
            AigcError: the range runs past the end of the split.
        """
        if start < 0 or length < 0 or start + length > self.num_tokens:
            raise AigcError(f"tokens {start}..{start + length} are outside the {self.split} split of {self.num_tokens} tokens")
        pieces = []
        while length > 0:
            shard = int(np.searchsorted(self._shard_starts, start, side="right")) - 1
            offset = start - int(self._shard_starts[shard])
            piece = self._shards[shard][offset : offset + length]
            pieces.append(piece)
            start += len(piece)
            length -= len(piece)
        return np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, dtype=np.int64)

    def _window_batch(self, starts: np.ndarray, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows = np.stack([self.read_tokens(int(start), width + 1) for start in starts])
        return torch.from_numpy(windows[:, :-1].copy()), torch.from_numpy(windows[:, 1:].copy())

    # ------------------------------------------------------------------ batches
    def get_batch(
        self, step: int, batch_size: int, block_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``rank::world_size`` of global batch number ``step``: a pure function of ``(seed, step)``.

        Args:
            step: the optimiser step (0-based); the same step always gives the same batch.
            batch_size: the GLOBAL batch size (all ranks together); must be a multiple of ``world_size``.
            block_size: the model's context length; rows have at most this many tokens.
            seed: the data seed.
            rank: this process's rank.
            world_size: the number of processes.

        Returns:
            ``(input_ids, targets)``, LongTensors of shape ``(batch_size // world_size, T)``: targets are the
            inputs shifted by one, ``-100`` where no loss is taken (source tokens, ``<sep>``, padding). ``T`` is
            ``block_size`` for text and the longest row of the global batch (at most ``block_size``) for records.

        Raises:
            AigcError: a negative step or seed, a non-positive size, a rank outside the world, a batch size not
                divisible by the world size, or a text split shorter than ``block_size + 1`` tokens.
        """
        self._check_batch_args(batch_size, block_size, step=step, seed=seed, rank=rank, world_size=world_size)
        if self.format == "text" and self.num_tokens < block_size + 1:
            raise AigcError(
                f"the {self.split} split has only {self.num_tokens} tokens, fewer than block_size + 1 = {block_size + 1}; "
                "lower block_size or add data",
                param="block_size",
            )
        global_rows = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
        if self.format == "records":
            epochs, positions = np.divmod(global_rows, self.num_records)
            record_indices = np.array(
                [self._epoch_permutation(seed, int(epoch))[position] for epoch, position in zip(epochs, positions)], dtype=np.int64
            )
            # The width comes from the whole global batch so every rank pads alike and rows reassemble exactly.
            width = self._batch_width(record_indices, block_size)
            return self._record_batch(record_indices[rank::world_size], width)
        starts = np.random.default_rng((seed, step)).integers(0, self.num_tokens - block_size, size=batch_size)
        return self._window_batch(starts[rank::world_size], block_size)

    def iter_eval_batches(self, batch_size: int, block_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Walk the whole split once, in order, for validation loss.

        Records come ``batch_size`` at a time in stored order (the last batch may be smaller). Text is cut
        into consecutive non-overlapping windows of ``min(block_size, num_tokens - 1)`` inputs; a tail
        shorter than one window is left out.

        Yields:
            ``(input_ids, targets)`` as in :meth:`get_batch`.
        """
        self._check_batch_args(batch_size, block_size)
        if self.format == "records":
            for first in range(0, self.num_records, batch_size):
                record_indices = np.arange(first, min(first + batch_size, self.num_records), dtype=np.int64)
                yield self._record_batch(record_indices, self._batch_width(record_indices, block_size))
            return
        width = min(block_size, self.num_tokens - 1)
        starts = np.arange(0, (self.num_tokens - 1) // width, dtype=np.int64) * width
        for first in range(0, len(starts), batch_size):
            yield self._window_batch(starts[first : first + batch_size], width)

    def tokens_per_batch(self, batch_size: int, block_size: int) -> int:
        """Expected number of real (non-padding) input tokens in a global batch, for tokens/second figures."""
        if self.format == "text":
            return batch_size * block_size
        mean_inputs = float(np.minimum(self._records[:, 2] - 1, block_size).mean())
        return round(batch_size * mean_inputs)

    def _check_batch_args(
        self, batch_size: int, block_size: int, *, step: int = 0, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        for name, value in (("batch_size", batch_size), ("block_size", block_size), ("world_size", world_size)):
            if value < 1:
                raise AigcError(f"{name} must be >= 1, got {value}", param=name)
        for name, value in (("step", step), ("seed", seed)):
            if value < 0:
                raise AigcError(f"{name} must be >= 0, got {value}", param=name)
        if not 0 <= rank < world_size:
            raise AigcError(f"rank {rank} is outside a world of {world_size} processes", param="rank")
        if batch_size % world_size:
            raise AigcError(f"batch size {batch_size} must be a multiple of the world size {world_size}", param="batch_size")
        if self.format == "records" and self.num_records == 0:
            raise AigcError(f"the {self.split} split holds no records; prepare the dataset again with more data")
        if self.format == "text" and self.num_tokens < 2:
            raise AigcError(f"the {self.split} split has {self.num_tokens} tokens, too few to predict any; add data")
