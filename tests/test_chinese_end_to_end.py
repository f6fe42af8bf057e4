"""Chinese through every stage, on a slice of AdvertiseGen and the real `aigc` commands:
prepare (byte-level BPE) → train a tiny GPT → `aigc write product-description --language zh --json`,
then the output's text and JSON, the prepared records' round trip, and the ChatGLM-style metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigc_studio.cli.main import app
from aigc_studio.data.dataset import TokenDataset
from aigc_studio.evaluation.chinese import chinese_bleu4, chinese_rouge
from aigc_studio.evaluation.text import has_cjk

SLICE_LINES = 60
ATTRIBUTES = "类型#裤*颜色#白色*风格#简约"
# Full-width punctuation (kept by cleaning) and a full-width digit (folded to ASCII by NFKC).
EXTRA_RECORD = {"content": "类型#裤*颜色#白色", "summary": "白色长裤，百搭又显瘦！（限时９折）……"}
EXTRA_RECORD_CLEANED = ("类型#裤*颜色#白色", "白色长裤，百搭又显瘦！（限时9折）……")
runner = CliRunner()


def aigc(*args: object) -> str:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.fixture(scope="module")
def advertisegen_slice(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    lines = (shared_data / "advertisegen" / "dev.json").read_text(encoding="utf-8").splitlines(keepends=True)[:SLICE_LINES]
    path = tmp_path_factory.mktemp("advertisegen") / "slice.json"
    path.write_text("".join(lines) + json.dumps(EXTRA_RECORD, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dataset(advertisegen_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "advertisegen"
    # A vocabulary larger than the slice needs, so every character seen becomes one whole token.
    aigc("data", "prepare", advertisegen_slice, "--source-col", "content", "--target-col", "summary",
         "--val-fraction", "0.2", "--tokenizer", "bpe", "--vocab-size", "4096", "--out", out)
    return out


@pytest.fixture(scope="module")
def model_dir(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "run"
    aigc("train", "--data", dataset, "--arch", "gpt", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
         "--block-size", "256", "--batch-size", "16", "--max-steps", "20", "--warmup-steps", "2",
         "--eval-interval", "20", "--eval-steps", "1", "--lr", "1e-2", "--out", out)
    return out


def write(model_dir: Path, *options: object) -> str:
    return aigc("write", "product-description", "--language", "zh", "--attributes", ATTRIBUTES, "--model", model_dir,
                "--max-tokens", "40", "--json", *options)


@pytest.fixture(scope="module")
def greedy_output(model_dir: Path) -> str:
    return write(model_dir, "--n", "1", "--temperature", "0")


@pytest.fixture(scope="module")
def sampled_output(model_dir: Path) -> str:
    return write(model_dir, "--n", "3", "--temperature", "1", "--seed", "7")


@pytest.fixture(scope="module")
def training_characters(dataset: Path) -> set[str]:
    train = TokenDataset(dataset, "train")
    return {character for index in range(train.num_records) for text in train.decode_record(index) for character in text}


def is_mojibake(text: str) -> bool:
    """UTF-8 read as Latin-1 shows up as characters such as "å", "ä" and "ç" (U+0080..U+00FF)."""
    return any("\u0080" <= character <= "\u00ff" for character in text)


def test_greedy_text_has_no_replacement_characters_or_mojibake(greedy_output: str, training_characters: set[str]):
    text = json.loads(greedy_output)["text"]
    assert text
    assert "\ufffd" not in text and not is_mojibake(text)
    # Every character comes from the training copy: no byte of a character was recombined into another one.
    assert set(text) <= training_characters


def test_sampled_candidates_carry_chinese_characters(sampled_output: str):
    # Twenty steps teach greedy decoding little beyond "，"; sampling shows the characters the model writes.
    # Its text is not held to the checks above: byte-level BPE learns tokens that end or start inside a
    # character, and an undertrained model may pair halves of two characters (U+FFFD, or another character).
    texts = [candidate["text"] for candidate in json.loads(sampled_output)["candidates"]]
    assert len(texts) == 3 and has_cjk("".join(texts))


@pytest.mark.parametrize("output", ["greedy_output", "sampled_output"])
def test_write_json_is_printed_unescaped_and_round_trips(output: str, request: pytest.FixtureRequest):
    printed = request.getfixturevalue(output)
    result = json.loads(printed)
    # Equal to ensure_ascii=False output: no character of 0x20 or above is written as a \u escape.
    assert printed == json.dumps(result, ensure_ascii=False) + "\n"
    # The text itself, whatever a sampled model wrote (a newline, a backslash), is in the line as JSON writes it,
    # and its Chinese characters appear as themselves.
    assert json.dumps(result["text"], ensure_ascii=False) in printed
    assert all(character in printed for character in result["text"] if ord(character) > 0x7F)
    assert result["prompt"] == ATTRIBUTES
    assert result["request"]["language"] == "zh"


def test_prepared_records_decode_to_their_cleaned_text(dataset: Path, advertisegen_slice: Path):
    raw = [json.loads(line) for line in advertisegen_slice.read_text(encoding="utf-8").splitlines()]
    expected = {(row["content"], row["summary"]) for row in raw[:-1]} | {EXTRA_RECORD_CLEANED}
    decoded = [split.decode_record(index) for split in (TokenDataset(dataset, "train"), TokenDataset(dataset, "val"))
               for index in range(split.num_records)]
    assert set(decoded) <= expected
    assert EXTRA_RECORD_CLEANED in decoded
    assert sum("，" in target and "。" in target for _, target in decoded) > len(decoded) // 2


def test_reference_scored_against_itself_is_100(shared_data: Path):
    first = json.loads((shared_data / "advertisegen" / "dev.json").read_text(encoding="utf-8").splitlines()[0])
    reference = first["summary"]
    assert chinese_bleu4([reference], [reference]) == pytest.approx(100.0)
    assert chinese_rouge([reference], [reference]) == pytest.approx({"rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0})
