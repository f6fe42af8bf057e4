"""The decoding contract both model families keep (docs/architecture.md "Models")."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aigc_studio.errors import AigcError

VOCAB_SIZE = 64  # the tiny models' vocabulary (tests/models/conftest.py)


def random_ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    """Ordinary (non-special) token ids."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(16, VOCAB_SIZE, (batch, length), generator=generator)


def test_forward_returns_logits_for_every_position_and_no_loss_without_targets(model):
    logits, loss = model(random_ids(2, 7))
    assert logits.shape == (2, 7, VOCAB_SIZE)
    assert loss is None


def test_loss_is_mean_cross_entropy_over_targets_not_minus_100(model):
    ids = random_ids(2, 6)
    targets = random_ids(2, 6, seed=2)
    targets[0, :3] = -100
    logits, loss = model(ids, targets)
    kept = targets != -100
    expected = F.cross_entropy(logits[kept], targets[kept])
    torch.testing.assert_close(loss, expected)


def test_future_tokens_do_not_change_earlier_logits(model):
    ids = random_ids(1, 8)
    changed = ids.clone()
    changed[0, 5:] = 16
    torch.testing.assert_close(model(ids)[0][:, :5], model(changed)[0][:, :5])


def test_prefill_then_decode_steps_match_forward_on_full_sequence(model):
    ids = random_ids(2, 12)
    full_logits, _ = model(ids)
    state = model.init_state(batch_size=2, max_length=12)
    step_logits = [model.step(ids[:, :5], state)]
    step_logits += [model.step(ids[:, t:t + 1], state) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(step_logits, dim=1), full_logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("padded", [False, True])
def test_last_only_prefill_returns_the_last_logits_and_the_same_state(model, padded):
    ids = random_ids(2, 6)
    mask = torch.ones_like(ids)
    if padded:
        mask[0, :2] = 0
    full_state, last_state = model.init_state(batch_size=2, max_length=8), model.init_state(batch_size=2, max_length=8)
    full = model.step(ids, full_state, attention_mask=mask)
    last = model.step(ids, last_state, attention_mask=mask, last_only=True)
    assert last.shape == (2, 1, VOCAB_SIZE)
    torch.testing.assert_close(last, full[:, -1:], atol=1e-6, rtol=0)
    next_ids = random_ids(2, 1, seed=9)
    torch.testing.assert_close(model.step(next_ids, last_state), model.step(next_ids, full_state), atol=1e-6, rtol=0)


def test_left_padded_row_gives_same_logits_as_row_alone(model):
    short, long = random_ids(1, 4, seed=3), random_ids(1, 7, seed=4)
    continuation = random_ids(2, 3, seed=5)
    padded = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1), long])  # (2, 7)
    mask = torch.ones_like(padded)
    mask[0, :3] = 0

    state = model.init_state(batch_size=2, max_length=10)
    batch_prefill = model.step(padded, state, attention_mask=mask)
    batch_steps = [model.step(continuation[:, t:t + 1], state, attention_mask=torch.ones(2, 1)) for t in range(3)]

    for row, prompt, real_from in ((0, short, 3), (1, long, 0)):
        alone_state = model.init_state(batch_size=1, max_length=10)
        alone_prefill = model.step(prompt, alone_state)
        alone_steps = [model.step(continuation[row:row + 1, t:t + 1], alone_state) for t in range(3)]
        torch.testing.assert_close(batch_prefill[row, real_from:], alone_prefill[0], atol=1e-5, rtol=0)
        for batch_step, alone_step in zip(batch_steps, alone_steps):
            torch.testing.assert_close(batch_step[row], alone_step[0], atol=1e-5, rtol=0)


def test_masked_decode_token_leaves_row_unchanged(model):
    ids = random_ids(2, 5)
    reference_state = model.init_state(batch_size=2, max_length=8)
    model.step(ids[:, :4], reference_state)
    reference = model.step(ids[:, 4:], reference_state)

    state = model.init_state(batch_size=2, max_length=8)
    model.step(ids[:, :4], state)
    # Row 0 has finished and is fed padding for one step; row 1 goes on.
    model.step(torch.tensor([[0], [ids[1, 4]]]), state, attention_mask=torch.tensor([[0], [1]]))
    after_pause = model.step(ids[:1, 4:].expand(2, 1), state)
    torch.testing.assert_close(after_pause[0], reference[0], atol=1e-5, rtol=0)


def test_state_reorder_selects_and_repeats_rows(model):
    ids = random_ids(2, 6)
    state = model.init_state(batch_size=2, max_length=8)
    model.step(ids[:, :5], state)
    state.reorder(torch.tensor([1, 1, 0]))
    logits = model.step(ids[[1, 1, 0], 5:], state)

    alone = model.init_state(batch_size=1, max_length=8)
    model.step(ids[1:, :5], alone)
    expected = model.step(ids[1:, 5:], alone)
    torch.testing.assert_close(logits[0], expected[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[1], expected[0], atol=1e-5, rtol=0)
    assert not torch.allclose(logits[2], expected[0])


def test_num_parameters_counts_tied_embedding_once(model):
    unique = {id(p): p.numel() for p in model.parameters()}
    assert model.num_parameters() == sum(unique.values())
    assert model.num_parameters() < sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))


@pytest.mark.parametrize("max_length", [0, -3])
def test_init_state_rejects_non_positive_max_length(model, max_length):
    with pytest.raises(AigcError, match="max_length") as error:
        model.init_state(batch_size=1, max_length=max_length)
    assert error.value.param == "max_length"


def test_extended_state_rows_decode_like_each_state_alone_also_after_rows_leave(model):
    # Continuous batching: a newcomer's state joins a running one (GPT: right-aligned, the shorter side
    # left-padded), then the older rows leave (GPT: their leading slots are compacted away).
    old_ids, new_ids, more = random_ids(2, 6, seed=6), random_ids(1, 3, seed=7), random_ids(3, 4, seed=8)
    state = model.init_state(batch_size=2, max_length=12)
    model.step(old_ids, state)
    newcomer = model.init_state(batch_size=1, max_length=9)
    model.step(new_ids, newcomer)
    state.extend(newcomer)
    assert state.batch_size == 3
    merged = [model.step(more[:, t:t + 1], state) for t in range(2)]
    state.reorder(torch.tensor([2]))
    if hasattr(state, "length"):
        assert state.length == 5  # the newcomer's 3 prompt tokens and 2 new ones; the padding before them is gone
    state.reserve(2)
    after_leaving = [model.step(more[2:, t:t + 1], state) for t in range(2, 4)]

    for row, prompt in ((0, old_ids[:1]), (1, old_ids[1:]), (2, new_ids)):
        alone = model.init_state(batch_size=1, max_length=12)
        model.step(prompt, alone)
        expected = [model.step(more[row:row + 1, t:t + 1], alone) for t in range(4)]
        for t in range(2):
            torch.testing.assert_close(merged[t][row], expected[t][0], atol=1e-5, rtol=0)
        if row == 2:
            for t in range(2):
                torch.testing.assert_close(after_leaving[t][0], expected[2 + t][0], atol=1e-5, rtol=0)


def test_reserve_makes_room_beyond_the_preallocated_length(model):
    ids = random_ids(1, 6)
    full, _ = model(ids)
    state = model.init_state(batch_size=1, max_length=4)
    logits = [model.step(ids[:, :4], state)]
    for t in range(4, 6):
        state.reserve(1)
        logits.append(model.step(ids[:, t:t + 1], state))
    torch.testing.assert_close(torch.cat(logits, dim=1), full, atol=1e-5, rtol=0)
