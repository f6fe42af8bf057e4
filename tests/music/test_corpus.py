"""aigc data prepare-music: tunes read from the music21 corpus, normalised, split by tune, through the data pipeline."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from aigc_studio.data.dataset import TokenDataset
from aigc_studio.data.tokenizer import TextTokenizer
from aigc_studio.errors import AigcError
from aigc_studio.music.corpus import parse_collections, prepare_music_dataset, read_tunes, tune_from_record
from aigc_studio.music.tokens import DURATIONS, MODE_TONIC


def test_tunes_are_whole_bars_in_c_major_or_a_minor(music_dataset: Path) -> None:
    records = read_tunes(music_dataset)
    assert len(records) >= 4
    for record in records:
        tune = tune_from_record(record)
        assert tune.mode in MODE_TONIC
        assert all(sum(units for _, units in bar) == tune.meter.bar_units for bar in tune.bars)
        assert all(units in DURATIONS for bar in tune.bars for _, units in bar)
        assert record["source"] == f"{tune.mode} {tune.meter} irish"
        assert record["original_key"]  # where it came from, before transposing


def test_prepared_through_the_data_pipeline_split_by_tune(music_dataset: Path) -> None:
    info = json.loads((music_dataset / "dataset.json").read_text())
    assert info["format"] == "records" and info["tokenizer"]["kind"] == "word" and info["columns"]["group"] == "tune"
    records = read_tunes(music_dataset)
    splits = Counter(record["split"] for record in records)
    assert splits["train"] == info["splits"]["train"]["records"] and splits["val"] == info["splits"]["val"]["records"] >= 1
    # The records written to the shards decode back to the tunes of their split.
    tokenizer = TextTokenizer.from_file(music_dataset / "tokenizer.json")
    # (The vocabulary is learned from the training tunes: a note only a held-out tune has decodes as nothing.)
    val_targets = {tokenizer.decode(tokenizer.encode(record["target"])) for record in records if record["split"] == "val"}
    dataset = TokenDataset(music_dataset, "val")
    assert {dataset.decode_record(index)[1] for index in range(dataset.num_records)} == val_targets
    report = json.loads((music_dataset / "music.json").read_text())
    assert report["tunes"] == len(records) and report["skipped"]  # skips are counted with their reasons


def test_unknown_collection_and_tiny_limit_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match="unknown corpus nope; choose from: ryans, oneills, essen, bach"):
        parse_collections("ryans,nope")
    with pytest.raises(AigcError, match="--limit 1"):
        prepare_music_dataset(tmp_path / "x", collections=["ryans"], limit=1)
