"""Model directories: symmetric save/load, the model card, and clear errors for broken directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aigc_studio.errors import AigcError
from aigc_studio.fileio import sha256_file
from aigc_studio.models.model_dir import (
    MODEL_DIR_FILES,
    MODEL_TYPES,
    GenerationConfig,
    ModelCard,
    load_pretrained,
    save_pretrained,
    weights_sha256,
)


@pytest.fixture
def saved(tmp_path: Path, model, char_tokenizer) -> Path:
    """A model directory of each family."""
    return save_pretrained(model, char_tokenizer, tmp_path / "model", generation_config=GenerationConfig())


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_round_trip_gives_bitwise_identical_logits(saved, model, char_tokenizer):
    loaded = load_pretrained(saved)
    ids = torch.tensor([char_tokenizer.encode("a cheap place")])
    assert type(loaded.model) is type(model) and not loaded.model.training
    assert torch.equal(loaded.model(ids)[0], model(ids)[0])
    assert loaded.tokenizer.encode("river") == char_tokenizer.encode("river")
    assert loaded.directory == saved


def test_directory_holds_the_hugging_face_files(saved, model):
    assert sorted(p.name for p in saved.iterdir()) == sorted(MODEL_DIR_FILES)
    config = json.loads((saved / "config.json").read_text())
    assert config["model_type"] == model.model_type
    assert config["architectures"] == [type(model).__name__]
    assert config["vocab_size"] == model.config.vocab_size and config["torch_dtype"] == "float32"


def test_tied_weights_are_stored_once(saved, model):
    tensors = load_file(saved / "model.safetensors")
    assert "embed_tokens.weight" in tensors and "lm_head.weight" not in tensors
    assert sum(t.numel() for t in tensors.values()) == model.num_parameters()


def test_untied_head_is_stored_and_loaded(tmp_path, make_gpt, char_tokenizer):
    model = make_gpt(tie_embeddings=False)
    save_pretrained(model, char_tokenizer, tmp_path, generation_config=GenerationConfig())
    assert "lm_head.weight" in load_file(tmp_path / "model.safetensors")
    loaded = load_pretrained(tmp_path).model
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert loaded.lm_head.weight is not loaded.embed_tokens.weight


def test_float16_weights_halve_the_file_and_load_as_float32(tmp_path, make_gpt, char_tokenizer):
    model = make_gpt()
    save_pretrained(model, char_tokenizer, tmp_path / "fp32", generation_config=GenerationConfig())
    save_pretrained(model, char_tokenizer, tmp_path / "fp16", generation_config=GenerationConfig(), dtype=torch.float16)
    assert all(t.dtype == torch.float16 for t in load_file(tmp_path / "fp16" / "model.safetensors").values())
    assert json.loads((tmp_path / "fp16" / "config.json").read_text())["torch_dtype"] == "float16"
    fp32_size, fp16_size = ((tmp_path / name / "model.safetensors").stat().st_size for name in ("fp32", "fp16"))
    assert fp16_size < 0.6 * fp32_size
    loaded = load_pretrained(tmp_path / "fp16").model
    assert loaded.embed_tokens.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.embed_tokens.weight, model.embed_tokens.weight, atol=1e-3, rtol=1e-3)


def test_load_converts_to_the_requested_dtype(saved):
    assert all(p.dtype == torch.bfloat16 for p in load_pretrained(saved, dtype=torch.bfloat16).model.parameters())


def test_generation_config_round_trips_and_max_length_defaults_to_block_size(tmp_path, make_gpt, char_tokenizer):
    settings = GenerationConfig(prompt_format="text", temperature=0.7, top_k=20, top_p=0.9, max_tokens=40, num_beams=3)
    save_pretrained(make_gpt(), char_tokenizer, tmp_path, generation_config=settings)
    loaded = load_pretrained(tmp_path).generation_config
    assert loaded.max_length == 32
    assert (loaded.prompt_format, loaded.temperature, loaded.top_k, loaded.top_p) == ("text", 0.7, 20, 0.9)
    assert (loaded.max_tokens, loaded.num_beams) == (40, 3)
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id, loaded.sep_token_id) == (1, 2, 0, 3)


def test_generation_max_length_beyond_block_size_is_rejected(tmp_path, make_gpt, char_tokenizer):
    with pytest.raises(AigcError, match="max_length=64 exceeds the model's block_size=32"):
        save_pretrained(make_gpt(), char_tokenizer, tmp_path, generation_config=GenerationConfig(max_length=64))


def test_tokenizer_larger_than_the_model_vocabulary_is_rejected(tmp_path, make_gpt, char_tokenizer):
    with pytest.raises(AigcError, match="tokenizer has .* tokens but the model embeds only 20"):
        save_pretrained(make_gpt(vocab_size=20), char_tokenizer, tmp_path, generation_config=GenerationConfig())


@pytest.mark.parametrize(
    ("field", "value"), [("top_p", 0.0), ("num_beams", 0), ("temperature", -1.0), ("prompt_format", "chat")]
)
def test_generation_config_rejects_out_of_range_values(field, value):
    with pytest.raises(AigcError, match=field) as error:
        GenerationConfig(**{field: value})
    assert error.value.param == field


def test_model_card_is_markdown_with_yaml_front_matter(tmp_path, make_gpt, char_tokenizer):
    model = make_gpt()
    card = ModelCard(name="e2e-gpt", description="Restaurant descriptions.", data_description="E2E NLG, 400 rows.",
                     data_sha256={"trainset.csv": "ab" * 32}, license="cc-by-sa-4.0",
                     recipe="aigc train --recipe recipes/e2e-gpt.toml", metrics={"val_loss": 1.23456})
    save_pretrained(model, char_tokenizer, tmp_path, generation_config=GenerationConfig(), card=card)
    text = (tmp_path / "README.md").read_text()
    front_matter, body = text.split("---\n")[1], text.split("---\n", 2)[2]
    assert 'license: "cc-by-sa-4.0"' in front_matter and "library_name: aigc-studio" in front_matter
    assert "# e2e-gpt" in body and "ab" * 32 in body and "aigc train --recipe recipes/e2e-gpt.toml" in body
    assert "| val_loss | 1.235 |" in body
    assert f"Parameters: {model.num_parameters():,}" in body


def test_weights_sha256_is_the_hash_of_the_weights_file(saved):
    assert weights_sha256(saved) == sha256_file(saved / "model.safetensors")


def test_missing_directory_is_reported(tmp_path):
    with pytest.raises(AigcError, match="model directory not found"):
        load_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize("missing", MODEL_DIR_FILES)
def test_each_missing_file_is_named(saved, missing):
    (saved / missing).unlink()
    with pytest.raises(AigcError, match=f"incomplete: missing {missing};"):
        load_pretrained(saved)


def test_unknown_model_type_lists_the_known_ones(saved):
    edit_json(saved / "config.json", model_type="aigc-mamba")
    with pytest.raises(AigcError, match=f"unknown model_type 'aigc-mamba'; known model types are: {', '.join(MODEL_TYPES)}"):
        load_pretrained(saved)


def test_unknown_config_field_is_named(saved):
    edit_json(saved / "config.json", n_experts=8)
    with pytest.raises(AigcError, match="unknown field.* n_experts; allowed fields are: vocab_size") as error:
        load_pretrained(saved)
    assert error.value.param == "n_experts"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("n_layer", "two", "n_layer='two' is not a valid int"),
    ("n_layer", True, "n_layer=True is not a valid int"),
    ("dropout", None, "dropout=None is not a valid float"),
    ("n_layer", -1, "n_layer must be a positive integer, got -1"),
])
def test_invalid_config_value_is_named(saved, field, value, message):
    edit_json(saved / "config.json", **{field: value})
    with pytest.raises(AigcError, match=message) as error:
        load_pretrained(saved)
    assert error.value.param == field


def test_invalid_generation_config_value_is_named(saved):
    edit_json(saved / "generation_config.json", prompt_format="chat")
    expected = r"generation_config.json: prompt_format='chat' is not a valid value, one of 'records', 'text'"
    with pytest.raises(AigcError, match=expected):
        load_pretrained(saved)


def test_weights_missing_a_tensor_are_named(saved):
    tensors = load_file(saved / "model.safetensors")
    dropped = sorted(tensors)[-1]
    del tensors[dropped]
    save_file(tensors, saved / "model.safetensors")
    with pytest.raises(AigcError, match=f"does not match config.json: missing tensors {dropped}"):
        load_pretrained(saved)


def test_unexpected_tensor_is_named(saved):
    tensors = load_file(saved / "model.safetensors")
    tensors["extra.weight"] = torch.zeros(2)
    save_file(tensors, saved / "model.safetensors")
    with pytest.raises(AigcError, match="unexpected tensors extra.weight"):
        load_pretrained(saved)


def test_weights_of_another_shape_are_named(saved):
    edit_json(saved / "config.json", vocab_size=80)
    with pytest.raises(AigcError, match=r"tensor embed_tokens.weight has shape \(64, \d+\), the config needs \(80, \d+\)"):
        load_pretrained(saved)


def test_damaged_weights_file_is_reported(saved):
    (saved / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(AigcError, match="cannot read weights .*damaged"):
        load_pretrained(saved)


def test_malformed_config_json_is_reported(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(AigcError, match="config.json is not valid JSON"):
        load_pretrained(saved)
