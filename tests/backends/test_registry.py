"""The model registry: [models.NAME] tables, directories and bundled names resolve to the right backend everywhere
(`aigc models list`, `aigc generate --model`, `aigc write --model`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.backends.registry import detect_backend, list_models, load_backend
from aigc_studio.backends.transformers import TransformersBackend
from aigc_studio.cli.main import app
from aigc_studio.errors import AigcError
from aigc_studio.models.registry import bundled_models
from aigc_studio.settings import Settings, load_settings

runner = CliRunner()


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aigc.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_name_resolves_to_a_table_then_a_directory_then_a_bundled_model(tiny_gpt2_dir: Path):
    settings = Settings(models={"tiny": {"backend": "transformers", "path": str(tiny_gpt2_dir)}})
    configured = load_backend("tiny", settings)
    assert isinstance(configured, TransformersBackend) and configured.info.name == "tiny"
    by_directory = load_backend(tiny_gpt2_dir, settings)
    assert isinstance(by_directory, TransformersBackend) and by_directory.info.name == tiny_gpt2_dir.name
    bundled = load_backend("e2e-copy", settings)
    assert isinstance(bundled, BuiltinBackend) and bundled.info.prompt_format == "records"
    assert detect_backend(bundled.loaded.directory) == "builtin" and detect_backend(tiny_gpt2_dir) == "transformers"


def test_an_unknown_name_lists_the_known_ones(tiny_gpt2_dir: Path):
    settings = Settings(models={"tiny": {"backend": "transformers", "path": str(tiny_gpt2_dir)}})
    known = ", ".join(["tiny", *bundled_models()])  # the configured model, then every bundled one
    with pytest.raises(AigcError, match=rf"model 'nope' not found: .*\(known: {known}\)") as error:
        load_backend("nope", settings)
    assert error.value.param == "model" and error.value.status == 404


def test_model_tables_are_checked_when_settings_load(tmp_path: Path):
    with pytest.raises(AigcError, match="models.remote.*an openai model needs url"):
        load_settings(write_config(tmp_path, '[models.remote]\nbackend = "openai"\n'))
    with pytest.raises(AigcError, match="models.x.backend"):
        load_settings(write_config(tmp_path, '[models.x]\nbackend = "vllm"\npath = "x"\n'))
    settings = load_settings(write_config(tmp_path, '[models.copy]\npath = "e2e-copy"\nprompt_format = "text"\n'))
    with pytest.raises(AigcError, match="trained on 'records' prompts; remove prompt_format"):
        load_backend("copy", settings)


def test_list_models_describes_every_model_without_loading_it(tmp_path: Path, tiny_llama_dir: Path):
    config = write_config(tmp_path, f'''
[models.llama]
backend = "transformers"
path = "{tiny_llama_dir}"
[models.gone]
backend = "transformers"
path = "{tmp_path / 'missing'}"
[models.vllm]
backend = "openai"
url = "http://localhost:8001/v1"
context_length = 32768
''')
    entries = {entry.name: entry for entry in list_models(load_settings(config))}
    assert list(entries) == ["llama", "gone", "vllm", *bundled_models()]  # configured ones, then the bundled ones
    llama = entries["llama"]
    assert (llama.backend, llama.prompt_format, llama.context_length) == ("transformers", "text", 1024)
    assert llama.weights_sha256 == TransformersBackend.from_directory(tiny_llama_dir).info.weights_sha256
    assert entries["gone"].problem and "not found" in entries["gone"].problem
    assert (entries["vllm"].location, entries["vllm"].context_length, entries["vllm"].weights_sha256) == ("http://localhost:8001/v1", 32768, "")
    assert (entries["e2e-copy"].source, entries["e2e-copy"].prompt_format, entries["e2e-copy"].context_length) == ("bundled", "records", 128)

    result = runner.invoke(app, ["models", "list", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["name"] for line in result.stdout.splitlines()] == ["llama", "gone", "vllm", *bundled_models()]
    table = runner.invoke(app, ["models", "list", "--config", str(config), "--no-hashes"])
    assert table.exit_code == 0 and "transformers" in table.stdout and "e2e-copy" in table.stdout


def test_generate_and_write_take_a_registry_name(tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch):
    config = write_config(tmp_path, f'[models.llama]\nbackend = "transformers"\npath = "{tiny_llama_dir}"\n')
    monkeypatch.setenv("AIGC_CONFIG", str(config))
    generated = runner.invoke(app, ["generate", "--model", "llama", "--prompt", "A pub", "--max-tokens", "5", "--json"])
    assert generated.exit_code == 0, generated.output
    assert json.loads(generated.stdout.splitlines()[-1])["usage"]["completion_tokens"] == 5
    written = runner.invoke(app, ["write", "ad-copy", "--model", "llama", "--attributes", "name[The Eagle], eatType[pub]",
                                  "--n", "2", "--max-tokens", "8", "--seed", "1", "--json"])
    assert written.exit_code == 0, written.output
    result = json.loads(written.stdout.splitlines()[-1])
    assert result["model"] == "llama" and result["prompt_format"] == "text" and len(result["candidates"]) == 2


def test_the_bundled_intent_router_is_listed_as_such_and_not_loaded_as_a_generator():
    from aigc_studio.backends.registry import INTENT_ROUTER_FORMAT
    from aigc_studio.support.intents import FORMAT

    assert INTENT_ROUTER_FORMAT == FORMAT  # the registry's copy of the router format (it avoids importing scipy)
    entries = {entry.name: entry for entry in list_models(Settings(), with_hashes=False)}
    assert entries["banking-intents"].backend == "intents" and entries["banking-intents"].problem is None
    with pytest.raises(AigcError, match="intent router, not a text generator.*aigc support classify"):
        load_backend("banking-intents", Settings())


def test_quantize_comes_from_the_table_or_the_call_and_the_cli_flag(tiny_gpt2_dir: Path):
    settings = Settings(models={"fast": {"path": "e2e-copy", "quantize": "int8"},
                                "remote": {"backend": "openai", "url": "http://127.0.0.1:9/v1"}})
    assert load_backend("fast", settings).model.lm_head_weight.int8
    assert not load_backend("e2e-copy", settings).model.lm_head_weight.int8
    assert load_backend("e2e-copy", settings, quantize="int8").model.lm_head_weight.int8
    with pytest.raises(AigcError, match="quantize it there"):
        load_backend("remote", settings, quantize="int8", check=False)
    prompt = "name[The Eagle], eatType[pub], area[riverside]"
    result = runner.invoke(app, ["generate", "--model", "e2e-copy", "--prompt", prompt, "--quantize", "int8", "--seed", "1"])
    assert result.exit_code == 0 and result.stdout.strip(), result.output
    refused = runner.invoke(app, ["generate", "--model", str(tiny_gpt2_dir), "--prompt", prompt, "--quantize", "int4"])
    assert isinstance(refused.exception, AigcError)
    assert "unknown quantization 'int4'; use one of: none, int8" in str(refused.exception)
