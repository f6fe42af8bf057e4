"""TokenDataset: batches as a pure function of (seed, step), rank slices, loss masks, eval walks, bad dirs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aigc_studio.data.dataset import IGNORE_INDEX, TokenDataset, read_dataset_info
from aigc_studio.data.prepare import PrepareConfig, prepare_dataset
from aigc_studio.errors import AigcError


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("records")
    with open(root / "r.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "target"])
        writer.writerows((f"item {i}", "word " * (1 + i % 7) + f"end {i}") for i in range(40))
    # Small shards so batches read records from several files.
    prepare_dataset([root / "r.csv"], root / "out", PrepareConfig(tokenizer="char", val_fraction=0.25, shard_tokens=300))
    return root / "out"


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("text")
    (root / "doc.txt").write_text("".join(f"line {i} of the text\n" for i in range(100)), encoding="utf-8")
    prepare_dataset([root / "doc.txt"], root / "out", PrepareConfig(tokenizer="char", shard_tokens=500))
    return root / "out"


def test_same_seed_and_step_give_the_same_batch_from_a_fresh_dataset(records_dir: Path) -> None:
    first = TokenDataset(records_dir, "train")
    first.get_batch(5, 8, 32, seed=1)  # draw another batch first: the result must not depend on history
    x1, y1 = first.get_batch(2, 8, 32, seed=1)
    x2, y2 = TokenDataset(records_dir, "train").get_batch(2, 8, 32, seed=1)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, TokenDataset(records_dir, "train").get_batch(3, 8, 32, seed=1)[0])
    assert not torch.equal(x1, TokenDataset(records_dir, "train").get_batch(2, 8, 32, seed=2)[0])


@pytest.mark.parametrize("directory", ["records_dir", "text_dir"])
def test_rank_slices_reassemble_the_global_batch(directory: str, request: pytest.FixtureRequest) -> None:
    dataset = TokenDataset(request.getfixturevalue(directory), "train")
    inputs, targets = dataset.get_batch(4, 12, 16, seed=9)
    world_size = 3
    parts = [dataset.get_batch(4, 12, 16, seed=9, rank=rank, world_size=world_size) for rank in range(world_size)]
    assert all(part[0].shape == (4, inputs.shape[1]) for part in parts)
    rebuilt_inputs, rebuilt_targets = torch.empty_like(inputs), torch.empty_like(targets)
    for rank, (part_inputs, part_targets) in enumerate(parts):
        rebuilt_inputs[rank::world_size], rebuilt_targets[rank::world_size] = part_inputs, part_targets
    assert torch.equal(rebuilt_inputs, inputs) and torch.equal(rebuilt_targets, targets)


def test_each_epoch_visits_every_record_once(records_dir: Path) -> None:
    dataset = TokenDataset(records_dir, "train")
    n = dataset.num_records
    seen = []
    for step in range(n):  # batch size 1: step i is global sample i
        inputs, _ = dataset.get_batch(step, 1, 64, seed=0)
        seen.append(tuple(inputs[0][inputs[0] != dataset.pad_id].tolist()))
    all_records = {tuple(dataset.record(i)[0][:-1].tolist()) for i in range(n)}
    assert set(seen) == all_records and len(seen) == n


def test_record_targets_take_loss_only_on_target_and_eos(records_dir: Path) -> None:
    dataset = TokenDataset(records_dir, "train")
    inputs, targets = dataset.iter_eval_batches(batch_size=dataset.num_records, block_size=256).__next__()
    for row in range(dataset.num_records):
        ids, target_start = dataset.record(row)
        length = len(ids) - 1
        assert inputs[row, :length].tolist() == ids[:-1].tolist()
        assert (targets[row, : target_start - 1] == IGNORE_INDEX).all()  # source tokens and <sep> are not predicted
        assert targets[row, target_start - 1 : length].tolist() == ids[target_start:].tolist()  # target ... <eos>
        assert (inputs[row, length:] == dataset.pad_id).all() and (targets[row, length:] == IGNORE_INDEX).all()


def test_long_records_are_truncated_to_block_size(records_dir: Path) -> None:
    dataset = TokenDataset(records_dir, "train")
    block_size = 12  # longer than most sources, shorter than most records
    inputs, targets = dataset.get_batch(0, 6, block_size, seed=0)
    assert inputs.shape == targets.shape == (6, block_size) and inputs.dtype == targets.dtype == torch.long
    all_inputs, all_targets = next(dataset.iter_eval_batches(dataset.num_records, block_size))
    long_row = next(i for i in range(dataset.num_records) if len(dataset.record(i)[0]) > block_size + 1)
    ids, target_start = dataset.record(long_row)
    assert all_inputs[long_row].tolist() == ids[:block_size].tolist()
    expected_targets = [t if position >= target_start - 1 else IGNORE_INDEX for position, t in enumerate(ids[1 : block_size + 1].tolist())]
    assert all_targets[long_row].tolist() == expected_targets
    assert any(t != IGNORE_INDEX for t in expected_targets)


def test_text_windows_are_shifted_by_one(text_dir: Path) -> None:
    dataset = TokenDataset(text_dir, "train")
    inputs, targets = dataset.get_batch(0, 4, 24, seed=3)
    assert inputs.shape == (4, 24)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert (targets != IGNORE_INDEX).all()


def test_text_windows_cross_shard_boundaries(text_dir: Path) -> None:
    dataset = TokenDataset(text_dir, "train")
    assert len(dataset.info["splits"]["train"]["shards"]) > 1
    whole = np.concatenate([np.memmap(text_dir / name, dtype=np.uint16, mode="r") for name in dataset.info["splits"]["train"]["shards"]])
    assert dataset.read_tokens(490, 20).tolist() == whole[490:510].tolist()


def test_eval_batches_walk_the_whole_split_in_order(records_dir: Path, text_dir: Path) -> None:
    records = TokenDataset(records_dir, "val")
    batches = list(records.iter_eval_batches(batch_size=3, block_size=64))
    assert sum(len(inputs) for inputs, _ in batches) == records.num_records
    assert batches[0][0][0, 0].item() == 1 and list(records.iter_eval_batches(3, 64))[0][0].tolist() == batches[0][0].tolist()
    text = TokenDataset(text_dir, "val")
    windows = torch.cat([inputs for inputs, _ in text.iter_eval_batches(batch_size=4, block_size=16)])
    assert windows.flatten().tolist() == text.read_tokens(0, windows.numel()).tolist()
    assert text.num_tokens - 1 - windows.numel() < 16  # only a tail shorter than one window is left out


def test_tokens_per_batch(records_dir: Path, text_dir: Path) -> None:
    assert TokenDataset(text_dir, "train").tokens_per_batch(4, 16) == 64
    records = TokenDataset(records_dir, "train")
    inputs, _ = records.iter_eval_batches(records.num_records, 8).__next__()
    expected = (inputs != records.pad_id).sum().item() * 4 / records.num_records
    assert records.tokens_per_batch(4, 8) == round(expected)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"batch_size": 0}, "batch_size"), ({"world_size": 3}, "batch_size"), ({"rank": 2, "world_size": 2}, "rank"), ({"step": -1}, "step")],
)
def test_bad_batch_arguments_name_the_parameter(records_dir: Path, kwargs: dict, param: str) -> None:
    arguments = {"step": 0, "batch_size": 4, "block_size": 16, "seed": 0} | kwargs
    with pytest.raises(AigcError) as error:
        TokenDataset(records_dir, "train").get_batch(**arguments)
    assert error.value.param == param


def test_text_block_size_longer_than_the_split_is_an_error(text_dir: Path) -> None:
    dataset = TokenDataset(text_dir, "val")
    with pytest.raises(AigcError, match="lower block_size") as error:
        dataset.get_batch(0, 2, dataset.num_tokens, seed=0)
    assert error.value.param == "block_size"


def test_directory_without_dataset_json_says_to_run_prepare(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match=r"dataset\.json is missing; run `aigc data prepare"):
        read_dataset_info(tmp_path)
    with pytest.raises(AigcError, match="dataset directory not found"):
        TokenDataset(tmp_path / "absent")


def test_missing_shard_is_named(tmp_path: Path, records_dir: Path) -> None:
    info = json.loads((records_dir / "dataset.json").read_text(encoding="utf-8"))
    (tmp_path / "dataset.json").write_text(json.dumps(info), encoding="utf-8")
    (tmp_path / "tokenizer.json").write_bytes((records_dir / "tokenizer.json").read_bytes())
    with pytest.raises(AigcError, match=r"incomplete dataset: train-00000\.bin is missing"):
        read_dataset_info(tmp_path)


def test_unknown_split_is_rejected(records_dir: Path) -> None:
    with pytest.raises(AigcError, match="unknown split 'test'"):
        TokenDataset(records_dir, "test")
