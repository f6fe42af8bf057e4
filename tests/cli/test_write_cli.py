"""`aigc write`: bad input is one clear AigcError; a tiny model trained here writes, ranks and batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigc_studio.cli.main import app
from aigc_studio.data.prepare import PrepareConfig, prepare_dataset
from aigc_studio.errors import AigcError
from aigc_studio.training.run import run_training

runner = CliRunner()
EAGLE = "name[The Eagle], eatType[pub]"


@pytest.fixture(scope="module")
def tiny_e2e_model(tmp_path_factory: pytest.TempPathFactory, e2e_slice: Path) -> Path:
    """A 1-layer character GPT trained for 20 steps on 400 E2E rows: fluent it is not, but it is a real model."""
    work = tmp_path_factory.mktemp("write-model")
    prepare_dataset([e2e_slice], work / "dataset", PrepareConfig(source_column="mr", target_column="ref", tokenizer="char"))
    overrides = {
        "data.directory": str(work / "dataset"), "model.arch": "gpt", "model.n_layer": 1, "model.n_head": 2,
        "model.n_embd": 32, "data.block_size": 128, "data.batch_size": 8, "schedule.max_steps": 20,
        "schedule.warmup_steps": 2, "eval.interval": 10, "eval.steps": 1, "threads": 1,
    }
    run_training(work / "model", overrides=overrides)
    return work / "model"


def user_error(*args: str) -> AigcError:
    result = runner.invoke(app, ["write", *args])
    assert isinstance(result.exception, AigcError), result.output
    return result.exception


def test_unknown_task_lists_the_tasks():
    error = user_error("poem", "--attributes", EAGLE)
    assert str(error) == "unknown task 'poem'; choose one of: ad-copy, product-description, social-post, blog-draft, email-subject"


def test_malformed_attributes_name_the_problem_and_the_accepted_forms():
    error = user_error("ad-copy", "--attributes", "name[The Eagle, eatType[pub]")
    assert error.param == "attributes" and "accepted forms" in str(error)


def test_empty_keywords_are_an_error():
    error = user_error("ad-copy", "--attributes", EAGLE, "--keywords", "")
    assert error.param == "keywords" and "keywords is empty" in str(error)


def test_a_model_that_does_not_exist_is_an_error(tmp_path: Path):
    error = user_error("ad-copy", "--attributes", EAGLE, "--model", str(tmp_path / "missing-model"))
    assert error.param == "model" and "no such directory and no bundled model" in str(error) and "aigc train" in str(error)


def test_n_below_one_is_an_error():
    error = user_error("ad-copy", "--attributes", EAGLE, "--n", "0")
    assert error.param == "n" and "n=0 is out of range" in str(error)


def test_missing_attributes_and_stray_output_are_errors(tmp_path: Path):
    assert "attributes are required" in str(user_error("ad-copy"))
    assert "--output goes with --input" in str(user_error("ad-copy", "--attributes", EAGLE, "--output", str(tmp_path / "o.jsonl")))


def test_bad_batch_line_names_file_and_line(tmp_path: Path):
    batch = tmp_path / "in.jsonl"
    batch.write_text(json.dumps({"attributes": EAGLE}) + "\n" + json.dumps({"attributes": EAGLE, "keywords": ""}) + "\n",
                     encoding="utf-8")
    error = user_error("ad-copy", "--input", str(batch), "--output", str(tmp_path / "out.jsonl"))
    assert str(error).startswith(f"{batch}:2: keywords is empty")


def test_write_ranks_candidates_from_a_trained_model(tiny_e2e_model: Path):
    result = runner.invoke(app, ["write", "ad-copy", "--attributes", EAGLE, "--keywords", "pub", "--forbid", "cheap",
                                 "--n", "3", "--model", str(tiny_e2e_model), "--seed", "1", "--max-tokens", "60", "--json"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["prompt"] == EAGLE and data["prompt_format"] == "records"
    candidates = data["candidates"]
    assert [candidate["rank"] for candidate in candidates] == [1, 2, 3] and data["text"] == candidates[0]["text"]
    assert sorted(candidate["index"] for candidate in candidates) == [0, 1, 2]
    for candidate in candidates:
        assert {"slot_error_rate", "keyword_coverage", "forbidden_word_hits", "perplexity"} <= set(candidate["scores"])
        assert candidate["explanation"].startswith(f"ranked {['1st', '2nd', '3rd'][candidate['rank'] - 1]} of 3")
    # acceptable candidates first, then by total
    keys = [(bool(candidate["violations"]), -candidate["total"]) for candidate in candidates]
    assert keys == sorted(keys)


def test_write_prints_score_cards(tiny_e2e_model: Path):
    result = runner.invoke(app, ["write", "ad-copy", "--attributes", EAGLE, "--n", "2", "--model", str(tiny_e2e_model),
                                 "--seed", "3", "--max-tokens", "40"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "#1  score" in result.output and "#2  score" in result.output and "slot_error_rate" in result.output


def test_batch_writes_each_line_with_its_best_text_and_ranked_candidates(tmp_path: Path, tiny_e2e_model: Path):
    batch = tmp_path / "in.jsonl"
    lines = [{"id": "eagle", "attributes": EAGLE, "keywords": ["pub"]},
             {"id": "mill", "attributes": "name=The Mill; food=French", "n": 1, "references": ["The Mill serves French food."]}]
    batch.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["write", "product-description", "--input", str(batch), "--output", str(out), "--n", "2",
                                 "--model", str(tiny_e2e_model), "--seed", "0", "--max-tokens", "40"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"wrote 2 results to {out}" in result.output.replace("\n", "")
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == ["eagle", "mill"] and rows[1]["references"] == ["The Mill serves French food."]
    assert [len(row["candidates"]) for row in rows] == [2, 1]  # the line's "n" beats the flag
    assert all(row["text"] == row["candidates"][0]["text"] for row in rows)


def test_write_is_governed_by_default(isolated_installation: Path):
    refused = user_error("ad-copy", "--attributes", "name[The Eagle], eatType[pub]", "--tone", "we will kill you")
    assert refused.code == "content_policy_violation" and "violence" in str(refused)
    result = runner.invoke(app, ["write", "ad-copy", "--attributes", EAGLE, "--n", "2", "--json", "--seed", "1"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.output)
    assert written["provenance"]["record_id"] == 1 and written["params"]["watermark"]["key_id"]
    audit = runner.invoke(app, ["audit", "verify"])
    assert audit.exit_code == 0, audit.output
    bare = runner.invoke(app, ["write", "ad-copy", "--attributes", EAGLE, "--n", "2", "--json", "--no-governance"])
    assert json.loads(bare.output)["provenance"] is None
