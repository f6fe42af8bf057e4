"""The Llama-style GPT: config checks, Llama parity for export, and its KV cache."""

from __future__ import annotations

import pytest
import torch

from aigc_studio.errors import AigcError
from aigc_studio.models.gpt import GPTConfig, llama_config, llama_state_dict


@pytest.mark.parametrize(("n_embd", "expected"), [(384, 1024), (32, 128), (100, 320)])
def test_intermediate_size_defaults_to_multiple_of_at_least_eight_thirds_n_embd(n_embd, expected):
    config = GPTConfig(n_embd=n_embd, n_head=2, multiple_of=64)
    assert config.intermediate_size == expected
    assert config.intermediate_size % 64 == 0 and config.intermediate_size >= 8 * n_embd / 3


def test_explicit_intermediate_size_is_kept():
    assert GPTConfig(intermediate_size=100).intermediate_size == 100


def test_config_rejects_n_embd_not_divisible_by_n_head():
    with pytest.raises(AigcError, match=r"n_embd=30 is not divisible by n_head=4.*multiple of n_head") as error:
        GPTConfig(n_embd=30, n_head=4)
    assert error.value.param == "n_embd"


@pytest.mark.parametrize("field", ["vocab_size", "block_size", "n_layer", "n_head", "n_embd", "multiple_of"])
def test_config_rejects_non_positive_sizes(field):
    with pytest.raises(AigcError, match=f"{field} must be a positive integer, got 0") as error:
        GPTConfig(**{field: 0})
    assert error.value.param == field


def test_config_rejects_dropout_outside_unit_interval():
    with pytest.raises(AigcError, match=r"dropout must be in \[0, 1\)"):
        GPTConfig(dropout=1.0)


def test_no_linear_layer_has_a_bias(make_gpt):
    model = make_gpt(tie_embeddings=False)
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())


def test_tie_embeddings_shares_the_head_with_the_embedding(make_gpt):
    tied, untied = make_gpt(tie_embeddings=True), make_gpt(tie_embeddings=False)
    assert tied.lm_head.weight is tied.embed_tokens.weight
    assert untied.lm_head.weight is not untied.embed_tokens.weight
    assert untied.num_parameters() - tied.num_parameters() == 64 * 32


def test_forward_rejects_sequences_longer_than_block_size(make_gpt):
    with pytest.raises(AigcError, match="longer than block_size=32"):
        make_gpt()(torch.zeros(1, 33, dtype=torch.long))


def test_init_state_rejects_max_length_beyond_block_size(make_gpt):
    with pytest.raises(AigcError, match=r"max_length=33 is outside 1..32"):
        make_gpt().init_state(batch_size=1, max_length=33)


def test_step_past_the_state_max_length_raises(make_gpt):
    model = make_gpt()
    state = model.init_state(batch_size=1, max_length=4)
    model.step(torch.ones(1, 4, dtype=torch.long), state)
    with pytest.raises(AigcError, match="past max_length=4"):
        model.step(torch.ones(1, 1, dtype=torch.long), state)


def test_kv_cache_is_preallocated_and_written_in_place(make_gpt):
    model = make_gpt()
    state = model.init_state(batch_size=2, max_length=10)
    assert state.keys[0].shape == (2, 4, 10, 8)  # (B, n_head, max_length, head_dim)
    pointers = [k.data_ptr() for k in state.keys + state.values]
    model.step(torch.ones(2, 3, dtype=torch.long), state)
    model.step(torch.ones(2, 1, dtype=torch.long), state)
    assert state.length == 4
    assert [k.data_ptr() for k in state.keys + state.values] == pointers
    assert state.keys[0][:, :, :4].abs().sum() > 0 and state.keys[0][:, :, 4:].abs().sum() == 0


def test_chunked_prefill_matches_one_prefill(make_gpt):
    model = make_gpt()
    ids = torch.randint(16, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    full, _ = model(ids)
    state = model.init_state(batch_size=2, max_length=9)
    chunks = [model.step(ids[:, :4], state), model.step(ids[:, 4:9], state)]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_llama_export_gives_the_same_logits_as_transformers(make_gpt, tie_embeddings):
    transformers = pytest.importorskip("transformers")
    model = make_gpt(tie_embeddings=tie_embeddings, rope_theta=500.0, norm_eps=1e-6)
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig.from_dict(llama_config(model.config))).eval()
    missing, unexpected = llama.load_state_dict(llama_state_dict(model), strict=False)
    assert unexpected == [] and missing == (["lm_head.weight"] if tie_embeddings else [])
    ids = torch.randint(0, 64, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = llama(ids).logits
    torch.testing.assert_close(model(ids)[0], expected, atol=1e-4, rtol=0)


def test_left_padded_step_matches_transformers_with_attention_mask(make_gpt):
    transformers = pytest.importorskip("transformers")
    model = make_gpt()
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig.from_dict(llama_config(model.config))).eval()
    llama.load_state_dict(llama_state_dict(model), strict=False)
    ids = torch.randint(16, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    with torch.no_grad():
        # transformers' own rule for left padding: positions count real tokens only.
        expected = llama(ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits
    logits = model.step(ids, model.init_state(batch_size=2, max_length=8), attention_mask=mask)
    torch.testing.assert_close(logits[mask.bool()], expected[mask.bool()], atol=1e-4, rtol=0)


def test_llama_config_carries_the_rotary_base_and_special_token_ids():
    exported = llama_config(GPTConfig(rope_theta=5e5, tie_embeddings=False))
    assert exported["rope_theta"] == exported["rope_parameters"]["rope_theta"] == 5e5
    assert (exported["pad_token_id"], exported["bos_token_id"], exported["eos_token_id"]) == (0, 1, 2)
    assert exported["tie_word_embeddings"] is False and exported["architectures"] == ["LlamaForCausalLM"]
