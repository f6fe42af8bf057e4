"""The Llama-style GPT: config checks, Llama parity for export, its KV cache, stacked projections and dtypes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aigc_studio.errors import AigcError
from aigc_studio.models.gpt import (
    FEW_ROWS,
    GPTConfig,
    RMSNorm,
    apply_rotary,
    linear,
    llama_config,
    llama_state_dict,
    rotary_tables,
)


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
    assert bool((state.keys[0][:, :, :4].abs().sum(-1) > 0).all())  # every filled slot was written


def _ids(shape: tuple[int, int], seed: int) -> torch.Tensor:
    return torch.randint(16, 64, shape, generator=torch.Generator().manual_seed(seed))


def _assert_rows_decode_as_alone(model, logits: list[torch.Tensor], prompts, more: torch.Tensor) -> None:
    """Row r of each batched step's logits equals prompt r then ``more[r]`` decoded in a cache of its own."""
    for row, prompt in enumerate(prompts):
        state = model.init_state(batch_size=1, max_length=prompt.size(1) + more.size(1))
        model.step(prompt, state)
        for t, step_logits in enumerate(logits):
            expected = model.step(more[row:row + 1, t:t + 1], state)[0, -1]
            torch.testing.assert_close(step_logits[row], expected, atol=1e-5, rtol=0)


def test_continuous_batch_closes_gaps_and_reuses_freed_rows_in_place(make_gpt):
    # Rows leave and join every few steps while serving: neither may copy the whole cache into new buffers,
    # and a newcomer written into a departed row's buffer must not see that row's leftovers.
    model = make_gpt()
    prompts, newcomer_prompt, more = _ids((3, 5), 1), _ids((1, 3), 2), _ids((3, 4), 3)
    state = model.init_state(batch_size=3, max_length=12)
    model.step(prompts, state)
    pointers = [buffer.data_ptr() for buffer in state.keys + state.values]
    state.reorder(torch.tensor([0, 2]))  # the middle row finishes
    assert state.batch_size == 2
    for buffer in state._keys + state._values:  # the freed row's buffer holds garbage, as it may after serving
        buffer[2:] = float("nan")
    newcomer = model.init_state(batch_size=1, max_length=7)
    model.step(newcomer_prompt, newcomer)
    state.extend(newcomer)
    assert state.batch_size == 3
    assert [buffer.data_ptr() for buffer in state.keys + state.values] == pointers  # joined in place
    logits = [model.step(more[:, t:t + 1], state)[:, -1] for t in range(4)]
    _assert_rows_decode_as_alone(model, logits, (prompts[:1], prompts[2:], newcomer_prompt), more)


def test_a_longer_newcomer_moves_the_running_rows_right(make_gpt):
    model = make_gpt()
    running_prompt, newcomer_prompt, more = _ids((2, 3), 4), _ids((1, 7), 5), _ids((3, 3), 6)
    state = model.init_state(batch_size=2, max_length=5)
    model.step(running_prompt, state)
    newcomer = model.init_state(batch_size=1, max_length=9)
    model.step(newcomer_prompt, newcomer)
    state.extend(newcomer)
    assert state.length == 7 and state.batch_size == 3
    logits = []
    for t in range(3):
        state.reserve(1)
        logits.append(model.step(more[:, t:t + 1], state)[:, -1])
    _assert_rows_decode_as_alone(model, logits, (running_prompt[:1], running_prompt[1:], newcomer_prompt), more)


@pytest.mark.parametrize("last_only", [False, True])
def test_step_many_equals_each_step_alone(make_gpt, last_only):
    # A padded batch's decode step and two newcomers' prefills (one left-padded) in one pass: every call's
    # logits and state end as if it had run alone.
    model = make_gpt()
    running, step_ids = _ids((3, 4), 7), _ids((3, 1), 8)
    running_mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1]])
    newcomers, newcomer_mask = _ids((2, 6), 9), torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]])
    single = _ids((1, 5), 10)

    def fresh():
        batch = model.init_state(batch_size=3, max_length=8)
        model.step(running, batch, running_mask)
        return batch, model.init_state(batch_size=2, max_length=8), model.init_state(batch_size=1, max_length=8)

    alone_states, together_states = fresh(), fresh()
    calls = [(step_ids, None), (newcomers, newcomer_mask), (single, None)]
    alone = [model.step(ids, state, mask, last_only=last_only) for (ids, mask), state in zip(calls, alone_states)]
    together = model.step_many([(ids, state, mask) for (ids, mask), state in zip(calls, together_states)],
                               last_only=last_only)
    for expected, got in zip(alone, together):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    for expected, got in zip(alone_states, together_states):
        assert got.length == expected.length
        torch.testing.assert_close(got.keys[0][:, :, :got.length], expected.keys[0][:, :, :expected.length], atol=1e-5, rtol=0)
        assert (got.key_mask is None) == (expected.key_mask is None)
        if got.key_mask is not None:
            assert torch.equal(got.key_mask, expected.key_mask) and torch.equal(got.positions, expected.positions)


def test_step_many_checks_that_every_call_fits(make_gpt):
    model = make_gpt()
    roomy, tight = model.init_state(batch_size=1, max_length=8), model.init_state(batch_size=1, max_length=2)
    with pytest.raises(AigcError, match="decoding past max_length=2"):
        model.step_many([(_ids((1, 3), 1), roomy, None), (_ids((1, 3), 2), tight, None)])


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


def decode_logits(model, ids: torch.Tensor, prefill: int) -> torch.Tensor:
    """Logits (B, T, V) from a prefill of ``prefill`` tokens, then one cached decode step per token."""
    state = model.init_state(batch_size=ids.size(0), max_length=ids.size(1))
    steps = [model.step(ids[:, :prefill], state)]
    steps += [model.step(ids[:, t:t + 1], state) for t in range(prefill, ids.size(1))]
    return torch.cat(steps, dim=1)


def test_stacked_projection_decode_matches_transformers_separate_projections(make_gpt):
    transformers = pytest.importorskip("transformers")
    model = make_gpt()
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig.from_dict(llama_config(model.config))).eval()
    llama.load_state_dict(llama_state_dict(model), strict=False)
    ids = torch.randint(16, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = llama(ids).logits  # q/k/v and gate/up as separate matmuls
    torch.testing.assert_close(decode_logits(model, ids, prefill=5), expected, atol=1e-5, rtol=0)


def test_stacked_weight_equals_the_separate_projections_side_by_side(make_gpt):
    attention = make_gpt().layers[0].self_attn
    x = torch.randn(3, 32)
    with torch.no_grad():
        stacked = F.linear(x, attention.qkv_weight())
        separate = torch.cat([attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)], dim=-1)
    torch.testing.assert_close(stacked, separate, atol=1e-6, rtol=0)


def test_state_dict_keeps_separate_llama_projection_names(make_gpt):
    names = set(make_gpt(n_layer=1).state_dict())
    assert {f"layers.0.self_attn.{p}_proj.weight" for p in "qkvo"} <= names
    assert {f"layers.0.mlp.{p}_proj.weight" for p in ("gate", "up", "down")} <= names
    assert not any("stacked" in name or "qkv" in name or "gate_up" in name for name in names)


def test_stacked_weight_is_reused_while_the_weights_are_unchanged(make_gpt):
    attention = make_gpt().layers[0].self_attn
    with torch.no_grad():
        assert attention.qkv_weight() is attention.qkv_weight()


def test_decode_after_load_state_dict_uses_the_new_weights(make_gpt):
    model, other = make_gpt(), make_gpt()
    torch.manual_seed(1)
    other.apply(other._init_weights)  # different weights, same shapes
    ids = torch.randint(16, 64, (1, 6), generator=torch.Generator().manual_seed(0))
    decode_logits(model, ids, prefill=3)  # builds the stacked copies from the old weights
    model.load_state_dict(other.state_dict())
    torch.testing.assert_close(decode_logits(model, ids, prefill=3), decode_logits(other, ids, prefill=3), atol=1e-6, rtol=0)


def test_decode_after_a_training_step_uses_the_updated_weights(make_gpt):
    model = make_gpt()
    ids = torch.randint(16, 64, (1, 6), generator=torch.Generator().manual_seed(0))
    before = decode_logits(model, ids, prefill=3)
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    _, loss = model(ids, ids)
    loss.backward()
    attention = model.layers[0].self_attn
    assert all(projection.weight.grad.abs().sum() > 0 for projection in (attention.q_proj, attention.k_proj, attention.v_proj))
    optimiser.step()
    model.eval()
    fresh = make_gpt()
    fresh.load_state_dict(model.state_dict())
    after = decode_logits(model, ids, prefill=3)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, decode_logits(fresh, ids, prefill=3), atol=1e-6, rtol=0)


def test_decode_after_an_in_place_weight_change_under_no_grad_uses_it(make_gpt):
    model = make_gpt()
    ids = torch.randint(16, 64, (1, 6), generator=torch.Generator().manual_seed(0))
    before = decode_logits(model, ids, prefill=3)
    with torch.no_grad():
        model.layers[0].mlp.up_proj.weight.mul_(3.0)
    fresh = make_gpt()
    fresh.load_state_dict(model.state_dict())
    after = decode_logits(model, ids, prefill=3)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, decode_logits(fresh, ids, prefill=3), atol=1e-6, rtol=0)


def test_decode_follows_a_dtype_change(make_gpt):
    model = make_gpt()
    ids = torch.randint(16, 64, (1, 6), generator=torch.Generator().manual_seed(0))
    reference = decode_logits(model, ids, prefill=3)
    logits = decode_logits(model.to(torch.float64), ids, prefill=3)
    assert logits.dtype == torch.float64
    torch.testing.assert_close(logits.float(), reference, atol=1e-5, rtol=0)


def test_model_built_in_inference_mode_decodes_like_a_normal_one(make_gpt):
    reference = make_gpt()
    with torch.inference_mode():
        model = make_gpt()  # its parameters are inference tensors, which keep no version counter
        ids = torch.randint(16, 64, (1, 6), generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(decode_logits(model, ids, prefill=3), decode_logits(reference, ids, prefill=3))


def test_apply_rotary_is_llamas_rotate_half_formula():
    x = torch.randn(2, 5, 3, 8)
    angles = torch.rand(5, 1, 8) * 6
    cos, sin = angles.cos(), angles.sin()
    signed_sin = torch.cat([-sin[..., :4], sin[..., 4:]], dim=-1)
    rotate_half = torch.cat([-x[..., 4:], x[..., :4]], dim=-1)
    torch.testing.assert_close(apply_rotary(x, cos, signed_sin), x * cos + rotate_half * sin, atol=1e-6, rtol=0)


def test_rotary_tables_negate_the_first_half_of_the_sine():
    cos, signed_sin = rotary_tables(head_dim=8, length=4, theta=10000.0)
    assert cos.shape == signed_sin.shape == (4, 8)
    torch.testing.assert_close(signed_sin[:, :4], -signed_sin[:, 4:])  # both halves share frequencies
    torch.testing.assert_close(cos ** 2 + signed_sin ** 2, torch.ones(4, 8))
    assert (signed_sin[1:, :4] < 0).all()  # small positive angles: sine > 0, negated in the first half


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_matches_llamas_formula_in_fp32(dtype):
    norm = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 16))
    norm.to(dtype)
    x = (torch.randn(3, 16) * 4).to(dtype)
    x32 = x.float()
    expected = norm.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)).to(dtype)
    assert norm(x).dtype == dtype
    torch.testing.assert_close(norm(x), expected, atol=1e-5 if dtype == torch.float32 else 1e-2, rtol=0)


def test_bfloat16_model_keeps_a_bfloat16_cache_and_stays_close_to_fp32(make_gpt):
    model = make_gpt()
    ids = torch.randint(16, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    reference = decode_logits(model, ids, prefill=4)
    half = make_gpt().to(torch.bfloat16)
    assert half.init_state(batch_size=1, max_length=4).keys[0].dtype == torch.bfloat16
    logits = decode_logits(half, ids, prefill=4)
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), reference, atol=2e-2, rtol=0)


@pytest.mark.parametrize("rows", [1, 3, 16, FEW_ROWS, FEW_ROWS + 1, 200])
def test_linear_equals_f_linear_for_few_and_many_rows(rows):
    generator = torch.Generator().manual_seed(rows)
    x, weight = torch.randn(2, rows, 48, generator=generator), torch.randn(80, 48, generator=generator)
    out = linear(x, weight)
    assert out.shape == (2, rows, 80) and out.is_contiguous()
    torch.testing.assert_close(out, F.linear(x, weight), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("masked", [False, True], ids=["all-keys", "padding-mask"])
def test_batched_one_query_attention_equals_the_fused_kernel(masked: bool):
    from aigc_studio.models.gpt import attention

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(shape, generator=generator) for shape in ((5, 4, 1, 16), (5, 4, 30, 16), (5, 4, 30, 16)))
    mask = None
    if masked:  # every row keeps its own (last) slot, as KV-cache masks do
        mask = torch.rand(5, 1, 1, 30, generator=generator) > 0.4
        mask[..., -1] = True
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(attention(q, k, v, attn_mask=mask), expected, rtol=1e-5, atol=1e-6)
