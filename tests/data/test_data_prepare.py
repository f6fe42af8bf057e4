"""prepare_dataset: splits, shards that decode back to the cleaned text, dataset.json, and user errors."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from aigc_studio.data.dataset import TokenDataset
from aigc_studio.data.prepare import PrepareConfig, prepare_dataset, split_records_by_source, split_text_documents
from aigc_studio.data.tokenizer import TextTokenizer
from aigc_studio.errors import AigcError
from aigc_studio.fileio import sha256_file


def write_records_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("mr", "ref")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def records_csv(tmp_path: Path) -> Path:
    rows = [(f"name[Place {i % 12}], food[{'Thai' if i % 2 else 'Greek'}]", f"Place {i % 12} serves food, review {i}.") for i in range(60)]
    return write_records_csv(tmp_path / "records.csv", rows)


# ---------------------------------------------------------------- splits
def test_records_split_never_puts_one_source_in_both_splits() -> None:
    sources = [f"s{i % 10}" for i in range(100)]
    is_val = split_records_by_source(sources, val_fraction=0.3, seed=0)
    val_sources = {s for s, v in zip(sources, is_val) if v}
    train_sources = {s for s, v in zip(sources, is_val) if not v}
    assert len(val_sources) == 3 and not val_sources & train_sources


def test_records_split_depends_on_seed_not_on_order() -> None:
    sources = [f"s{i}" for i in range(50)]
    chosen = {s for s, v in zip(sources, split_records_by_source(sources, 0.2, seed=7)) if v}
    reversed_sources = sources[::-1]
    assert chosen == {s for s, v in zip(reversed_sources, split_records_by_source(reversed_sources, 0.2, seed=7)) if v}
    assert chosen != {s for s, v in zip(sources, split_records_by_source(sources, 0.2, seed=8)) if v}


def test_records_split_needs_two_sources() -> None:
    with pytest.raises(AigcError, match="share one source"):
        split_records_by_source(["same"] * 5, 0.2, seed=0)


def test_text_split_is_the_contiguous_tail_and_may_cut_a_document() -> None:
    train, val = split_text_documents(["aaaa", "bbbb", "cc"], val_fraction=0.3)  # 10 chars: 7 train, 3 val
    assert [(p.text, p.starts_document, p.ends_document) for p in train] == [("aaaa", True, True), ("bbb", True, False)]
    assert [(p.text, p.starts_document, p.ends_document) for p in val] == [("b", False, True), ("cc", True, True)]


def test_text_split_of_too_little_text_is_an_error() -> None:
    with pytest.raises(AigcError, match="too little"):
        split_text_documents(["a"], val_fraction=0.1)


# ---------------------------------------------------------------- records end to end
def test_records_shards_decode_back_to_the_cleaned_text(tmp_path: Path, records_csv: Path) -> None:
    info = prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(source_column="mr", target_column="ref", vocab_size=300, seed=3))
    with open(records_csv, encoding="utf-8") as handle:
        expected = {(row["mr"], row["ref"]) for row in csv.DictReader(handle)}
    decoded = set()
    for split in ("train", "val"):
        dataset = TokenDataset(tmp_path / "out", split)
        for index in range(dataset.num_records):
            ids, target_start = dataset.record(index)
            assert ids[0] == 1 and ids[target_start - 1] == 3 and ids[-1] == 2  # <bos> ... <sep> ... <eos>
            decoded.add(dataset.decode_record(index))
    assert decoded == expected
    assert info["splits"]["train"]["records"] + info["splits"]["val"]["records"] == 60
    assert info["splits"]["val"]["sources"] >= 1 and info["splits"]["train"]["sources"] + info["splits"]["val"]["sources"] == 12


def test_dataset_json_describes_inputs_cleaning_tokenizer_and_splits(tmp_path: Path, records_csv: Path) -> None:
    duplicate_rows = records_csv.read_text(encoding="utf-8") + '"name[Place 0], food[Greek]","Place 0 serves food, review 0."\n'
    records_csv.write_text(duplicate_rows, encoding="utf-8")
    info = prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(source_column="mr", target_column="ref", vocab_size=300))
    assert json.loads((tmp_path / "out" / "dataset.json").read_text(encoding="utf-8")) == info
    assert info["format"] == "records" and info["columns"] == {"source": "mr", "target": "ref"}
    assert info["inputs"] == [{"path": str(records_csv), "format": "csv", "rows": 61, "bytes": records_csv.stat().st_size,
                               "sha256": sha256_file(records_csv)}]
    assert {step["step"]: step["removed"] for step in info["cleaning"]}["exact_duplicates"] == 1
    assert info["num_records_read"] == 61 and info["num_records_kept"] == 60
    assert info["tokenizer"]["kind"] == "bpe" and info["tokenizer"]["vocab_size"] == TextTokenizer.from_file(tmp_path / "out" / "tokenizer.json").vocab_size
    assert info["dtype"] == "uint16" and info["seed"] == 1337 and info["val_fraction"] == 0.1
    for split in ("train", "val"):
        sizes = info["splits"][split]
        tokens = sum(len(np.memmap(tmp_path / "out" / name, dtype=np.uint16, mode="r")) for name in sizes["shards"])
        assert tokens == sizes["tokens"]


def test_small_shard_tokens_write_several_shards_without_splitting_records(tmp_path: Path, records_csv: Path) -> None:
    config = PrepareConfig(source_column="mr", target_column="ref", tokenizer="char", shard_tokens=400)
    info = prepare_dataset([records_csv], tmp_path / "out", config)
    train = info["splits"]["train"]
    assert len(train["shards"]) > 1 and len(train["index"]) == len(train["shards"])
    for shard, index in zip(train["shards"], train["index"]):
        rows = np.load(tmp_path / "out" / index)
        tokens = np.memmap(tmp_path / "out" / shard, dtype=np.uint16, mode="r")
        assert rows[-1, 0] + rows[-1, 1] == len(tokens)  # records fill their shard exactly, none cut in two


def test_same_inputs_and_seed_give_identical_files(tmp_path: Path, records_csv: Path) -> None:
    config = PrepareConfig(source_column="mr", target_column="ref", tokenizer="char")
    prepare_dataset([records_csv], tmp_path / "a", config)
    prepare_dataset([records_csv], tmp_path / "b", config)
    for name in ("train-00000.bin", "val-00000.bin", "train-00000.idx.npy", "tokenizer.json"):
        assert sha256_file(tmp_path / "a" / name) == sha256_file(tmp_path / "b" / name)


def test_source_target_columns_are_found_without_flags(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"source": f"s{i}", "target": f"t{i}", "id": i}) + "\n" for i in range(20)), encoding="utf-8")
    info = prepare_dataset([path], tmp_path / "out", PrepareConfig(tokenizer="char"))
    assert info["format"] == "records" and info["columns"] == {"source": "source", "target": "target"}


# ---------------------------------------------------------------- text end to end
def test_text_stream_is_bos_doc_eos_and_tokenizer_sees_train_only(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("abcabcabc\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("zzz", encoding="utf-8")  # the last 3 of 12 characters: all validation
    info = prepare_dataset([tmp_path / "a.txt", tmp_path / "b.txt"], tmp_path / "out", PrepareConfig(tokenizer="char", val_fraction=0.25))
    train, val = TokenDataset(tmp_path / "out", "train"), TokenDataset(tmp_path / "out", "val")
    tokenizer = train.tokenizer
    assert tokenizer.decode(train.read_tokens(0, train.num_tokens).tolist(), skip_special_tokens=False) == "<bos>abcabcabc<eos>"
    # "z" never occurs in training text, so the tokenizer has no id for it.
    assert val.read_tokens(0, val.num_tokens).tolist() == [tokenizer.bos_id, 4, 4, 4, tokenizer.eos_id]
    assert info["format"] == "text" and info["splits"]["val"]["tokens"] == 5


def test_text_column_of_a_csv(tmp_path: Path) -> None:
    path = write_records_csv(tmp_path / "t.csv", [(f"document number {i}", str(i)) for i in range(10)], header=("body", "id"))
    info = prepare_dataset([path], tmp_path / "out", PrepareConfig(text_column="body", tokenizer="char"))
    assert info["format"] == "text" and info["columns"] == {"text": "body"} and info["num_records_kept"] == 10


# ---------------------------------------------------------------- errors
def test_unknown_column_lists_the_columns_found(tmp_path: Path, records_csv: Path) -> None:
    with pytest.raises(AigcError, match=r"column 'text' not found in .*records\.csv; columns are: mr, ref") as error:
        prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(text_column="text"))
    assert error.value.param == "text_col"


def test_no_recognised_columns_asks_for_flags(tmp_path: Path, records_csv: Path) -> None:
    with pytest.raises(AigcError, match=r"columns are: mr, ref; pass --source-col and --target-col"):
        prepare_dataset([records_csv], tmp_path / "out")


@pytest.mark.parametrize("fraction", [0.0, 0.51, -0.1, 1.0])
def test_val_fraction_outside_zero_to_half_is_rejected(tmp_path: Path, records_csv: Path, fraction: float) -> None:
    with pytest.raises(AigcError, match=r"--val-fraction must be in \(0, 0.5\]") as error:
        prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(source_column="mr", target_column="ref", val_fraction=fraction))
    assert error.value.param == "val_fraction"


def test_empty_after_cleaning_names_the_filter(tmp_path: Path, records_csv: Path) -> None:
    with pytest.raises(AigcError, match="max_chars filter removed the last 60 of 60"):
        prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(source_column="mr", target_column="ref", max_chars=5))
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_unknown_format_is_rejected(tmp_path: Path, records_csv: Path) -> None:
    with pytest.raises(AigcError, match="unknown input format 'parquet'"):
        prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(input_format="parquet"))


def test_source_col_without_target_col_is_rejected(tmp_path: Path, records_csv: Path) -> None:
    with pytest.raises(AigcError, match="--source-col and --target-col go together"):
        prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(source_column="mr"))


def test_non_empty_output_needs_overwrite(tmp_path: Path, records_csv: Path) -> None:
    config = PrepareConfig(source_column="mr", target_column="ref", tokenizer="char")
    prepare_dataset([records_csv], tmp_path / "out", config)
    with pytest.raises(AigcError, match="not empty; choose a new --out or pass --overwrite"):
        prepare_dataset([records_csv], tmp_path / "out", config)
    config.overwrite = True
    config.shard_tokens = 400
    info = prepare_dataset([records_csv], tmp_path / "out", config)
    written = {path.name for path in (tmp_path / "out").iterdir()}
    listed = {"dataset.json", "tokenizer.json"} | {name for split in info["splits"].values() for name in split["shards"] + split["index"]}
    assert written == listed  # no stale shard from the first run is left behind


def test_overwrite_refuses_a_folder_that_is_not_a_dataset(tmp_path: Path, records_csv: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(AigcError, match="holds no prepared dataset"):
        prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(source_column="mr", target_column="ref", overwrite=True))
    assert (tmp_path / "out" / "notes.txt").exists()


def test_failed_overwrite_keeps_the_previous_dataset(tmp_path: Path, records_csv: Path) -> None:
    config = PrepareConfig(source_column="mr", target_column="ref", tokenizer="char")
    first = prepare_dataset([records_csv], tmp_path / "out", config)
    with pytest.raises(AigcError, match="max_chars filter"):
        prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(source_column="mr", target_column="ref", max_chars=5, overwrite=True))
    assert TokenDataset(tmp_path / "out", "train").info == first


# ---------------------------------------------------------------- explicit validation inputs
def test_val_inputs_are_the_validation_split_and_overlapping_sources_leave_training(
    tmp_path: Path, e2e_slice: Path, shared_data: Path
) -> None:
    with open(e2e_slice, encoding="utf-8") as handle:
        train_rows = [(row["mr"], row["ref"]) for row in csv.DictReader(handle)]
    # The three most repeated training sources copied into a second validation file: all their records must leave training.
    leaked_sources = [source for source, _ in Counter(source for source, _ in train_rows).most_common(3)]
    leaked = write_records_csv(tmp_path / "leaked.csv", [(source, f"A new reference for {source}.") for source in leaked_sources])
    devset = shared_data / "e2e" / "devset.csv"
    config = PrepareConfig(source_column="mr", target_column="ref", tokenizer="char", val_inputs=[devset, leaked])
    info = prepare_dataset([e2e_slice], tmp_path / "out", config)

    assert info["split_method"] == "val_inputs" and info["val_fraction"] is None and info["config"]["val_inputs"] == [str(devset), str(leaked)]
    assert [(item["path"], item["sha256"]) for item in info["val_inputs"]] == [(str(devset), sha256_file(devset)), (str(leaked), sha256_file(leaked))]
    assert info["inputs"][0]["sha256"] == sha256_file(e2e_slice) and info["val_cleaning"]["num_records_read"] == 4672 + 3
    assert info["splits"]["val"]["sources"] == 547 + 3  # the devset's 547 distinct MRs plus the leaked three
    dropped = sum(source in leaked_sources for source, _ in set(train_rows))
    assert info["overlap"] == {"val_sources_in_train": 3, "train_records_dropped": dropped} and dropped > 3
    train = TokenDataset(tmp_path / "out", "train")
    train_sources = {train.decode_record(index)[0] for index in range(train.num_records)}
    with open(devset, encoding="utf-8") as handle:
        val_sources = {row["mr"] for row in csv.DictReader(handle)} | set(leaked_sources)
    assert not train_sources & val_sources and train.num_records == info["num_records_kept"] - dropped


def test_text_val_inputs_are_whole_documents_and_the_tokenizer_sees_train_only(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("abcabc", encoding="utf-8")
    (tmp_path / "val.txt").write_text("abz", encoding="utf-8")
    prepare_dataset([tmp_path / "train.txt"], tmp_path / "out", PrepareConfig(tokenizer="char", val_inputs=[tmp_path / "val.txt"]))
    train, val = TokenDataset(tmp_path / "out", "train"), TokenDataset(tmp_path / "out", "val")
    tokenizer = train.tokenizer
    assert tokenizer.decode(train.read_tokens(0, train.num_tokens).tolist(), skip_special_tokens=False) == "<bos>abcabc<eos>"
    assert val.read_tokens(0, val.num_tokens).tolist() == [tokenizer.bos_id, *tokenizer.encode("ab"), tokenizer.unk_id, tokenizer.eos_id]
    assert val.info["overlap"] is None and val.info["split_method"] == "val_inputs"


def test_validation_is_deduplicated_within_its_own_split_only(tmp_path: Path, records_csv: Path) -> None:
    # The first training record, twice: once dropped as a duplicate inside validation, once kept there
    # (training already holding it is not a duplicate, it is overlap, and training loses it instead).
    val_csv = write_records_csv(tmp_path / "val.csv", [("name[Place 0], food[Greek]", "Place 0 serves food, review 0.")] * 2)
    info = prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(source_column="mr", target_column="ref", tokenizer="char",
                                                                        val_inputs=[val_csv]))
    assert {step["step"]: step["removed"] for step in info["val_cleaning"]["steps"]}["exact_duplicates"] == 1
    assert info["splits"]["val"]["records"] == 1 and info["overlap"] == {"val_sources_in_train": 1, "train_records_dropped": 5}
    assert info["splits"]["train"]["records"] == 55


def test_validation_holding_every_training_source_is_an_error(tmp_path: Path, records_csv: Path) -> None:
    val_csv = write_records_csv(tmp_path / "val.csv", [(f"name[Place {i}], food[{'Thai' if i % 2 else 'Greek'}]", "x") for i in range(12)])
    with pytest.raises(AigcError, match="all 60 training records have a source that the validation inputs also have") as error:
        prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(source_column="mr", target_column="ref", val_inputs=[val_csv]))
    assert error.value.param == "val_inputs" and not (tmp_path / "out").exists()


def test_a_file_cannot_be_both_training_and_validation_input(tmp_path: Path, records_csv: Path) -> None:
    with pytest.raises(AigcError, match="given both as a training input and as --val-input") as error:
        prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(source_column="mr", target_column="ref", val_inputs=[records_csv]))
    assert error.value.param == "val_inputs"


def test_validation_input_without_the_columns_names_them(tmp_path: Path, records_csv: Path) -> None:
    val_csv = write_records_csv(tmp_path / "val.csv", [("a", "b")], header=("mr", "text"))
    with pytest.raises(AigcError, match=r"column 'ref' not found in .*val\.csv; columns are: mr, text"):
        prepare_dataset([records_csv], tmp_path / "out", PrepareConfig(source_column="mr", target_column="ref", val_inputs=[val_csv]))


# ---------------------------------------------------------------- Chinese text
def test_advertisegen_summaries_round_trip_with_their_full_width_punctuation(tmp_path: Path, shared_data: Path) -> None:
    lines = (shared_data / "advertisegen" / "dev.json").read_text(encoding="utf-8").splitlines()
    originals = [json.loads(line) for line in lines]
    # A zero-width space and a control character are the only things cleaning may take out of a summary.
    with_noise = [dict(row, summary=row["summary"].replace("，", "，\u200b", 1) + "\x07") for row in originals]
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in with_noise), encoding="utf-8")
    info = prepare_dataset([path], tmp_path / "out", PrepareConfig(source_column="content", target_column="summary", vocab_size=1024))
    expected = {(row["content"], row["summary"]) for row in originals}
    decoded = set()
    for split in ("train", "val"):
        dataset = TokenDataset(tmp_path / "out", split)
        decoded |= {dataset.decode_record(index) for index in range(dataset.num_records)}
    # Every kept summary decodes to exactly its original; only near-duplicates (one pair in this file) are dropped.
    assert decoded <= expected and len(decoded) == info["num_records_kept"]
    assert {step["step"] for step in info["cleaning"] if step["removed"]} <= {"normalized_duplicates"}
    assert all(any(mark in summary for _, summary in decoded) for mark in "，；！？％：")
