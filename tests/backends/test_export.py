"""`aigc export`: a GPT becomes a LlamaForCausalLM directory that plain transformers loads with our logits (<= 1e-4
in fp32), our tokenizer and our greedy output; an LSTM becomes TorchScript with the same logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.backends.transformers import TransformersBackend
from aigc_studio.cli.main import app
from aigc_studio.content.delexicalize import delexicalize
from aigc_studio.data.tokenizer import train_tokenizer
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampler import generate
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.export import export_model
from aigc_studio.models.gpt import GPT, GPTConfig
from aigc_studio.models.lstm import LSTMConfig, LSTMLanguageModel
from aigc_studio.models.model_dir import GenerationConfig, load_pretrained, save_pretrained
from aigc_studio.models.registry import resolve_model

from .conftest import SENTENCES

transformers = pytest.importorskip("transformers")
runner = CliRunner()
SOURCES = ["name[The Eagle], eatType[pub], food[French], area[riverside]", "name[Aromi], food[Italian], near[The Bakers]",
           "name[Blue Spice], eatType[coffee shop], customer rating[5 out of 5], familyFriendly[yes]"]


def tiny_model_dir(directory: Path, model: torch.nn.Module, tokenizer) -> Path:
    return save_pretrained(model, tokenizer, directory, generation_config=GenerationConfig(prompt_format="records"))


@pytest.fixture(scope="module")
def bpe():
    return train_tokenizer(SENTENCES, kind="bpe", vocab_size=300)


@pytest.fixture(scope="module")
def exported_e2e(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled e2e-copy exported through the CLI."""
    out = tmp_path_factory.mktemp("export") / "e2e-copy-hf"
    result = runner.invoke(app, ["export", "--model", "e2e-copy", "--format", "hf", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_transformers_loads_the_export_with_our_logits_and_tokenizer(tmp_path: Path, bpe, tie_embeddings: bool):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=bpe.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32,
                          tie_embeddings=tie_embeddings, rope_theta=5e5)).eval()
    export_model(tiny_model_dir(tmp_path / "ours", model, bpe), tmp_path / "hf", "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "LlamaForCausalLM" and hf.dtype == torch.float32
    ids = torch.randint(0, bpe.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        difference = (hf(ids).logits - model(ids)[0]).abs().max().item()
    assert difference <= 1e-4

    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "A riverside pub near the city centre."
    assert tokenizer(text).input_ids == [bpe.bos_id, *bpe.encode(text)]  # <bos> in front, as Llama tokenizers do
    assert tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True) == text
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.sep_token) == ("<bos>", "<eos>", "<pad>", "<sep>")
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "name[X]"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<bos>name[X]<sep>"  # a chat endpoint prompts a records model the way it was trained
    generation = transformers.GenerationConfig.from_pretrained(tmp_path / "hf")
    assert (generation.bos_token_id, generation.eos_token_id, generation.pad_token_id) == (1, 2, 0)
    assert json.loads((tmp_path / "hf" / "generation_config.json").read_text())["prompt_format"] == "records"


def test_plain_transformers_greedy_output_equals_ours_on_the_exported_bundled_model(exported_e2e: Path):
    ours = load_pretrained(resolve_model("e2e-copy"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported_e2e).eval()
    slots = ours.generation_config.delexicalized_slots
    for source in SOURCES:
        prompt = [ours.tokenizer.bos_id, *ours.tokenizer.encode(delexicalize(source, None, slots)[0]), ours.tokenizer.sep_id]
        (completion,) = generate(ours.model, ours.tokenizer, [prompt], SamplingParams(temperature=0, max_tokens=60))[0].completions
        ids = torch.tensor([prompt])
        with torch.no_grad():
            expected = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=60)
        assert completion.finish_reason == "stop"  # a real sentence that ends with <eos>, not a cut-off
        assert expected[0, len(prompt):].tolist() == completion.token_ids


def test_the_transformers_backend_over_the_export_writes_what_the_builtin_backend_writes(exported_e2e: Path):
    exported = TransformersBackend.from_directory(exported_e2e)
    builtin = BuiltinBackend.from_directory(resolve_model("e2e-copy"))
    assert exported.info.prompt_format == "records" and exported.delexicalized_slots == builtin.generation_config.delexicalized_slots
    for params in (SamplingParams(temperature=0, max_tokens=60), SamplingParams(temperature=1.0, n=3, seed=9, max_tokens=60),
                   SamplingParams(num_beams=3, n=2, max_tokens=60)):
        ours = [[c.text for c in result.candidates] for result in builtin.generate(SOURCES, params)]
        theirs = [[c.text for c in result.candidates] for result in exported.generate(SOURCES, params)]
        assert theirs == ours
    assert "The Eagle" in "".join(chunk.text for chunk in exported.stream(SOURCES[0], SamplingParams(temperature=0)))


def test_the_lstm_exports_to_torchscript_with_the_same_logits(tmp_path: Path, bpe):
    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(vocab_size=bpe.vocab_size, block_size=64, n_embd=16, hidden_size=16, n_layer=2)).eval()
    source = tiny_model_dir(tmp_path / "lstm", model, bpe)
    result = runner.invoke(app, ["export", "--model", str(source), "--format", "torchscript", "--out", str(tmp_path / "ts")])
    assert result.exit_code == 0, result.output
    traced = torch.jit.load(str(tmp_path / "ts" / "model.pt"))
    ids = torch.randint(0, bpe.vocab_size, (3, 25), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(traced(ids), model(ids)[0], atol=1e-5, rtol=0)
    assert {path.name for path in (tmp_path / "ts").iterdir()} >= {"model.pt", "tokenizer.json", "config.json",
                                                                     "generation_config.json", "README.md"}


def test_export_errors_name_the_problem(tmp_path: Path, bpe):
    torch.manual_seed(0)
    lstm = LSTMLanguageModel(LSTMConfig(vocab_size=bpe.vocab_size, block_size=32, n_embd=8, hidden_size=8, n_layer=1)).eval()
    source = tiny_model_dir(tmp_path / "lstm", lstm, bpe)
    with pytest.raises(AigcError, match="only the GPT exports to the Hugging Face Llama format.*--format torchscript"):
        export_model(source, tmp_path / "out", "hf")
    with pytest.raises(AigcError, match="unknown export format 'onnx'"):
        export_model(source, tmp_path / "out", "onnx")
    with pytest.raises(AigcError, match="export to a new directory"):
        export_model(source, source, "torchscript")
    result = runner.invoke(app, ["export", "--model", "no-such-model", "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, AigcError) and result.exception.param == "model"
