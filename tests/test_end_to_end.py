"""The whole core flow on a slice of E2E, through the real `aigc` commands:
prepare → train GPT and LSTM → generate (one prompt, a JSONL batch, a stream) → reload with identical logits
→ bad inputs answered with one clear line and exit status 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aigc_studio.backends.builtin import BuiltinBackend, _partial_placeholder_length
from aigc_studio.cli.main import app
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.model_dir import load_pretrained

MR = "name[The Eagle], eatType[pub], food[French], area[riverside], near[Burger King]"
runner = CliRunner()


def aigc(*args: str) -> str:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def aigc_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point, so the one-line error handling of cli.main.main() is what runs."""
    code = "from aigc_studio.cli.main import main; main()"
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, e2e_slice: Path) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "data"
    aigc("data", "prepare", e2e_slice, "--source-col", "mr", "--target-col", "ref", "--delexicalize", "name,near",
         "--vocab-size", "400", "--out", out)
    return out


def train(dataset: Path, out: Path, arch: str) -> Path:
    aigc("train", "--data", dataset, "--arch", arch, "--n-layer", "1", "--n-embd", "32",
         *(["--n-head", "2"] if arch == "gpt" else []), "--block-size", "128", "--batch-size", "16",
         "--max-steps", "30", "--warmup-steps", "5", "--eval-interval", "15", "--eval-steps", "2", "--lr", "5e-3", "--out", out)
    return out


@pytest.fixture(scope="module")
def gpt_dir(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(dataset, tmp_path_factory.mktemp("gpt") / "run", "gpt")


@pytest.fixture(scope="module")
def lstm_dir(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(dataset, tmp_path_factory.mktemp("lstm") / "run", "lstm")


@pytest.fixture(params=["gpt", "lstm"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"{request.param}_dir")


def test_prepared_dataset_is_delexicalised(dataset: Path):
    info = json.loads((dataset / "dataset.json").read_text())
    assert info["delexicalized_slots"] == ["name", "near"]
    assert info["format"] == "records"


def test_generate_one_prompt_json_is_reproducible_and_relexicalised(model_dir: Path):
    args = ["generate", "--model", model_dir, "--prompt", MR, "--n", "2", "--seed", "3", "--max-tokens", "40", "--json"]
    first, second = json.loads(aigc(*args)), json.loads(aigc(*args))
    assert first == second
    assert len(first["candidates"]) == 2
    assert first["usage"]["completion_tokens"] == sum(c["num_tokens"] for c in first["candidates"])
    for candidate in first["candidates"]:
        assert "__name__" not in candidate["text"] and "__near__" not in candidate["text"]


def test_generate_batch_file_adds_text_and_candidates(model_dir: Path, tmp_path: Path):
    requests = tmp_path / "in.jsonl"
    requests.write_text("".join(json.dumps({"id": i, "source": MR}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    aigc("generate", "--model", model_dir, "--input", requests, "--output", out, "--n", "2", "--max-tokens", "20", "--seed", "1")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == [0, 1, 2]
    assert all(row["source"] == MR and row["text"] == row["candidates"][0] and len(row["candidates"]) == 2 for row in rows)


def test_beam_search_from_the_cli(model_dir: Path):
    result = json.loads(aigc("generate", "--model", model_dir, "--prompt", MR, "--num-beams", "3", "--n", "2", "--max-tokens", "30", "--json"))
    scores = [candidate["cumulative_logprob"] for candidate in result["candidates"]]
    assert len(scores) == 2


def test_stream_joins_to_the_generated_text(model_dir: Path):
    backend = BuiltinBackend.from_directory(model_dir)
    params = SamplingParams(temperature=0.8, top_k=20, seed=5, max_tokens=40)
    chunks = list(backend.stream(MR, params))
    assert "".join(chunk.text for chunk in chunks) == backend.generate([MR], params)[0].candidates[0].text
    assert chunks[-1].finish_reason in ("stop", "length")


def test_score_gives_one_logprob_per_continuation_token_plus_eos(model_dir: Path):
    backend = BuiltinBackend.from_directory(model_dir)
    scores = backend.score(MR, "The Eagle is a pub.")
    assert len(scores) >= 3 and all(score.logprob <= 0 for score in scores)
    assert scores[-1].token == "<eos>"


def test_reloaded_directory_gives_identical_logits(model_dir: Path):
    first, second = load_pretrained(model_dir), load_pretrained(model_dir)
    ids = torch.tensor([[1, *first.tokenizer.encode("name[__name__], eatType[pub]"), 3]])
    with torch.no_grad():
        assert torch.equal(first.model(ids)[0], second.model(ids)[0])


def test_partial_placeholder_is_held_back_until_decided():
    values = {"__name__": "The Eagle"}
    assert _partial_placeholder_length("Welcome to __na", values) == 4
    assert _partial_placeholder_length("Welcome to _", values) == 1
    assert _partial_placeholder_length("Welcome.", values) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{missing}", "--prompt", "x"], "not found"),
        (["--model", "{empty}", "--prompt", "x"], "config.json"),
        (["--model", "{model}", "--prompt", "x", "--temperature", "-1"], "temperature"),
        (["--model", "{model}", "--prompt", "x", "--top-p", "1.5"], "top_p"),
        (["--model", "{model}", "--prompt", "x " * 400], "context"),
        (["--model", "{model}", "--input", "{bad_jsonl}", "--output", "{out}"], ":2: malformed JSON"),
        (["--model", "{model}"], "exactly one of --prompt"),
    ],
)
def test_generate_bad_input_is_one_line_and_exit_2(gpt_dir: Path, tmp_path: Path, args: list[str], message: str):
    (tmp_path / "empty").mkdir()
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"id": 1, "source": "name[A]"}\n{"id": 2, "source": \n')
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "model": gpt_dir, "bad_jsonl": bad_jsonl,
             "out": tmp_path / "out.jsonl"}
    result = aigc_subprocess("generate", *[arg.format(**paths) for arg in args])
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
