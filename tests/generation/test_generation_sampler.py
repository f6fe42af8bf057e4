from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import torch

from aigc_studio.errors import AigcError
from aigc_studio.generation import SamplingParams, generate, stream
from aigc_studio.models.gpt import GPT, GPTConfig

CONTEXT = 64  # block_size of the trained models in conftest.py
GREEDY = SamplingParams(temperature=0, max_tokens=40)


def only(outputs):
    """The single completion of a single-prompt, n=1 request."""
    assert len(outputs) == 1 and len(outputs[0].completions) == 1
    return outputs[0].completions[0]


def test_greedy_continues_a_learned_sentence_and_stops_at_eos(model, tokenizer, encode):
    completion = only(generate(model, tokenizer, [encode("the quick")], GREEDY))
    assert completion.text == " brown fox jumps over the lazy dog."
    assert completion.finish_reason == "stop"
    assert completion.token_ids[-1] == tokenizer.eos_id  # the ending token is kept, its text is not


@pytest.mark.parametrize(
    "params",
    [GREEDY, GREEDY.replace(repetition_penalty=1.3, presence_penalty=0.4, frequency_penalty=0.2, no_repeat_ngram_size=2)],
    ids=["plain", "penalties"],
)
def test_greedy_batch_with_different_prompt_lengths_equals_each_prompt_alone(model, tokenizer, encode, params):
    prompts = [encode("the quick"), encode("hello"), [tokenizer.bos_id], encode("连衣"), encode("cheap food near")]
    batched = generate(model, tokenizer, prompts, params)
    for prompt, output in zip(prompts, batched):
        alone = only(generate(model, tokenizer, [prompt], params))
        assert output.prompt_token_ids == prompt
        assert output.completions[0].token_ids == alone.token_ids
        assert output.completions[0].text == alone.text
        assert output.completions[0].logprobs == pytest.approx(alone.logprobs, abs=1e-4)
    assert len({len(output.completions[0].token_ids) for output in batched}) > 1  # rows finished at different steps


def test_same_seed_gives_the_same_candidates_and_another_seed_other_ones(model, tokenizer, encode):
    params = SamplingParams(temperature=1.5, max_tokens=20, n=3, seed=11)
    first = generate(model, tokenizer, [encode("a")], params)[0].completions
    again = generate(model, tokenizer, [encode("a")], params)[0].completions
    other = generate(model, tokenizer, [encode("a")], params.replace(seed=12))[0].completions
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert [c.token_ids for c in first] != [c.token_ids for c in other]
    assert len({tuple(c.token_ids) for c in first}) > 1  # the n candidates draw different random numbers


def test_a_seeded_candidate_does_not_depend_on_the_rest_of_the_batch(model, tokenizer, encode):
    params = SamplingParams(temperature=3.0, top_k=100, max_tokens=20, n=2, seed=3)
    alone = generate(model, tokenizer, [encode("hello")], params)[0]
    batched = generate(model, tokenizer, [encode("the quick brown"), encode("hello"), encode("a")], params)[1]
    assert [c.token_ids for c in batched.completions] == [c.token_ids for c in alone.completions]


def test_unseeded_sampling_follows_torch_manual_seed(model, tokenizer, encode):
    params = SamplingParams(temperature=1.5, max_tokens=15)
    torch.manual_seed(5)
    first = only(generate(model, tokenizer, [encode("a")], params))
    torch.manual_seed(5)
    assert only(generate(model, tokenizer, [encode("a")], params)).token_ids == first.token_ids


def test_stop_string_cuts_the_text_just_before_it(model, tokenizer, encode):
    completion = only(generate(model, tokenizer, [encode("the quick")], GREEDY.replace(stop=["lazy", "over"])))
    assert completion.text == " brown fox jumps "
    assert completion.finish_reason == "stop"
    assert tokenizer.decode(completion.token_ids).startswith(" brown fox jumps over")  # tokens are kept


def test_stop_token_id_ends_the_completion_without_its_text(model, tokenizer, encode):
    full = only(generate(model, tokenizer, [encode("hello")], GREEDY))
    stop_id = full.token_ids[3]
    completion = only(generate(model, tokenizer, [encode("hello")], GREEDY.replace(stop_token_ids=[stop_id])))
    position = full.token_ids.index(stop_id)
    assert completion.token_ids == full.token_ids[:position + 1]
    assert completion.text == tokenizer.decode(full.token_ids[:position])
    assert completion.finish_reason == "stop"


def test_max_tokens_ends_with_length(model, tokenizer, encode):
    completion = only(generate(model, tokenizer, [encode("the quick")], GREEDY.replace(max_tokens=3)))
    assert len(completion.token_ids) == 3 and completion.finish_reason == "length"
    assert completion.text == tokenizer.decode(completion.token_ids)


def test_min_tokens_delays_eos(model, tokenizer, encode):
    natural = only(generate(model, tokenizer, [encode("hello")], GREEDY))
    delayed = only(generate(model, tokenizer, [encode("hello")], GREEDY.replace(min_tokens=len(natural.token_ids) + 5)))
    assert tokenizer.eos_id not in delayed.token_ids[:len(natural.token_ids) + 5]
    assert len(delayed.token_ids) > len(natural.token_ids) + 5 or delayed.finish_reason == "length"


def test_max_tokens_is_clipped_to_the_context_left(model, tokenizer, encode):
    prompt = encode("the quick")
    params = SamplingParams(temperature=0, max_tokens=100, min_tokens=100)  # no <eos>: run into the limit
    completion = only(generate(model, tokenizer, [prompt], params, max_length=len(prompt) + 4))
    assert len(completion.token_ids) == 4 and completion.finish_reason == "length"


def test_short_and_long_prompts_in_one_request_each_get_their_whole_budget(model, tokenizer, encode):
    # Left padding makes the pair need more cache slots than the context holds while both run; the cache
    # drops the long prompt's columns once it finishes, so the short prompt's completion is not cut.
    long_prompt, short_prompt = encode("the quick brown fox jumps over the lazy dog. hello"), [tokenizer.bos_id]
    params = SamplingParams(temperature=0, max_tokens=100, min_tokens=100)
    both = generate(model, tokenizer, [short_prompt, long_prompt], params)
    for prompt, output in zip([short_prompt, long_prompt], both):
        assert len(output.completions[0].token_ids) == CONTEXT - len(prompt)
        assert output.completions[0].token_ids == only(generate(model, tokenizer, [prompt], params)).token_ids


def test_logprobs_are_the_raw_model_log_softmax_whatever_the_sampling_settings(model, tokenizer, encode):
    prompt = encode("hello")
    params = SamplingParams(temperature=0.5, top_k=3, repetition_penalty=1.3, max_tokens=8, seed=0, logprobs=3)
    completion = only(generate(model, tokenizer, [prompt], params))
    sequence = torch.tensor([prompt + completion.token_ids])
    with torch.no_grad():
        logits, _ = model(sequence)
    expected = logits[0, len(prompt) - 1:-1].log_softmax(-1)  # (new tokens, V): the distribution at each step
    chosen = expected.gather(1, torch.tensor(completion.token_ids)[:, None]).squeeze(1)
    assert completion.logprobs == pytest.approx(chosen.tolist(), abs=1e-4)
    assert completion.cumulative_logprob == pytest.approx(sum(chosen.tolist()), abs=1e-3)
    for step, alternatives in enumerate(completion.top_logprobs):
        best = expected[step].topk(3)
        assert list(alternatives) == best.indices.tolist()
        assert list(alternatives.values()) == pytest.approx(best.values.tolist(), abs=1e-4)


def test_top_logprobs_are_none_unless_asked(model, tokenizer, encode):
    assert only(generate(model, tokenizer, [encode("a")], GREEDY.replace(max_tokens=3))).top_logprobs is None
    assert only(generate(model, tokenizer, [encode("a")], GREEDY.replace(max_tokens=3, logprobs=0))).top_logprobs is None


def test_extra_logits_processor_is_applied(model, tokenizer, encode):
    usual = only(generate(model, tokenizer, [encode("the quick")], GREEDY))
    banned = usual.token_ids[0]

    def ban(logits, token_ids):
        return logits.index_fill(1, torch.tensor([banned]), float("-inf"))

    completion = only(generate(model, tokenizer, [encode("the quick")], GREEDY, logits_processors=[ban]))
    assert banned not in completion.token_ids


def test_num_beams_above_one_returns_the_best_beams(model, tokenizer, encode):
    outputs = generate(model, tokenizer, [encode("hello"), encode("a red")], SamplingParams(num_beams=3, n=2, max_tokens=30))
    assert [len(output.completions) for output in outputs] == [2, 2]
    assert outputs[0].completions[0].text == " world, hello there!"


@pytest.mark.parametrize(
    ("prompts", "max_length", "message"),
    [
        ([[]], None, "prompt is empty"),
        ([1, 2, 3], None, "prompt 0 must be a list of token ids, got int"),
        ([[1, 10_000]], None, "token id 10000, outside the model's vocabulary"),
        ([[1] * 70], None, f"prompt is 70 tokens; the model's context is {CONTEXT}"),
        ([[1], [1] * CONTEXT], None, f"prompt 1 is {CONTEXT} tokens"),
        ([[1, 2, 3]], 3, "prompt is 3 tokens; the model's context is 3"),
        ([[1]], CONTEXT + 1, f"longer than the model's context of {CONTEXT}"),
        ([], None, "no prompts"),
    ],
)
def test_bad_prompts_raise_one_clear_line(trained_gpt, tokenizer, prompts, max_length, message):
    assert trained_gpt.config.block_size == CONTEXT
    with pytest.raises(AigcError, match=message) as error:
        generate(trained_gpt, tokenizer, prompts, GREEDY, max_length=max_length)
    assert "\n" not in str(error.value)


def test_unknown_stop_token_id_is_rejected(trained_gpt, tokenizer):
    with pytest.raises(AigcError, match="stop token id 5000") as error:
        generate(trained_gpt, tokenizer, [[1]], GREEDY.replace(stop_token_ids=[5000]))
    assert error.value.param == "stop_token_ids"


def test_generate_restores_the_models_training_mode(tokenizer):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.5))
    params = SamplingParams(temperature=0, max_tokens=5)
    first = only(generate(model.train(), tokenizer, [[1]], params))
    assert model.training
    assert only(generate(model, tokenizer, [[1]], params)).token_ids == first.token_ids  # dropout was off


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=1.2, top_p=0.95, max_tokens=30, seed=1),
        SamplingParams(temperature=0, max_tokens=40, stop=["over", "there"]),
        SamplingParams(temperature=0.8, max_tokens=40, seed=2, stop=["t"], logprobs=2),
    ],
)
@pytest.mark.parametrize("text", ["the quick", "hello", "连衣", ""])
def test_stream_concatenation_equals_generate(model, tokenizer, encode, params, text):
    events = list(stream(model, tokenizer, encode(text), params))
    completion = only(generate(model, tokenizer, [encode(text)], params))
    assert "".join(event.text for event in events) == completion.text
    assert [event.token_id for event in events] == completion.token_ids
    assert [event.logprob for event in events] == pytest.approx(completion.logprobs, abs=1e-4)
    assert [event.finish_reason for event in events] == [None] * (len(events) - 1) + [completion.finish_reason]
    assert (events[-1].top_logprobs is not None) == bool(params.logprobs)


def test_stream_holds_back_chinese_characters_split_across_tokens(model, tokenizer, encode):
    prompt = encode("连衣")
    events = list(stream(model, tokenizer, prompt, GREEDY))
    assert "".join(event.text for event in events) == "裙简约时尚，宽松舒适。"
    assert any(event.text == "" for event in events[:-1])  # some tokens were only part of a character
    assert all("\ufffd" not in event.text for event in events)


def test_stream_holds_back_the_start_of_a_stop_string(model, tokenizer, encode):
    events = list(stream(model, tokenizer, encode("the quick"), GREEDY.replace(stop=["lazy dog"])))
    texts = [event.text for event in events]
    assert "".join(texts) == " brown fox jumps over the "
    assert not any("la" in text for text in texts)
    assert events[-1].finish_reason == "stop"


@pytest.mark.parametrize("field", ["n", "num_beams"])
def test_stream_returns_one_candidate_only(trained_gpt, tokenizer, field):
    with pytest.raises(AigcError, match=f"{field}=2") as error:
        stream(trained_gpt, tokenizer, [1], SamplingParams(**{field: 2}))  # raised at the call, before iterating
    assert error.value.param == field


@pytest.mark.parametrize("text", ["the quick", "hello", "连衣"])
def test_bfloat16_gpt_gives_the_same_greedy_completion_as_float32(trained_gpt, tokenizer, encode, text):
    expected = only(generate(trained_gpt, tokenizer, [encode(text)], GREEDY))
    half = copy.deepcopy(trained_gpt).to(torch.bfloat16)  # deep copy: the session's fp32 model stays as it is
    completion = only(generate(half, tokenizer, [encode(text)], GREEDY))
    assert completion.token_ids == expected.token_ids
    assert completion.text == expected.text
    assert completion.logprobs == pytest.approx(expected.logprobs, abs=5e-3)


def test_greedy_and_sampled_groups_in_one_batch_pick_as_they_would_alone(model, tokenizer, encode):
    # The batch picks every row's token at once (argmax rows and inverse-CDF rows together); each group must
    # still get exactly the tokens it gets decoding alone.
    from aigc_studio.generation.sampler import DecodeBatch

    requests = [
        ([encode("the quick")], GREEDY),
        ([encode("hello"), encode("cheap food near")], SamplingParams(temperature=1.0, top_k=20, max_tokens=30, n=2, seed=3)),
        ([encode("连衣")], GREEDY.replace(repetition_penalty=1.3)),
        ([encode("the lazy")], SamplingParams(temperature=0.8, top_p=0.9, max_tokens=25, seed=4)),
    ]
    batch = DecodeBatch(model, tokenizer)
    groups = [batch.add(prompts, params) for prompts, params in requests]
    while batch.num_rows:
        batch.step()
    for group, (prompts, params) in zip(groups, requests):
        alone = generate(model, tokenizer, prompts, params)
        assert [[c.token_ids for c in output.completions] for output in group.outputs()] == \
            [[c.token_ids for c in output.completions] for output in alone]


@dataclass(frozen=True)
class LastTokenBias:
    """A processor that reads each row's last token (context_width 1) and logs the rows of every call."""

    context_width: ClassVar[int] = 1
    calls: list = field(compare=False)

    def __call__(self, logits, token_ids):
        self.calls.append(token_ids.shape)
        return logits + 2.0 * (torch.arange(logits.size(1)) % 7 == token_ids[:, -1:] % 7)


def test_groups_with_equal_processors_go_through_them_in_one_call_and_decode_as_alone(model, tokenizer, encode):
    from aigc_studio.generation.sampler import DecodeBatch

    calls = []
    shared = SamplingParams(temperature=1.0, top_k=20, max_tokens=8, seed=5)
    requests = [([encode(text)], shared.replace(seed=seed)) for seed, text in enumerate(["the quick", "hello", "连衣"])]
    batch = DecodeBatch(model, tokenizer)
    groups = [batch.add(prompts, params, logits_processors=[LastTokenBias(calls)]) for prompts, params in requests]
    batch.step()  # the prefill
    batch.step()
    # one call for the three requests, each row with its own last token (prompts of different widths)
    assert calls == [torch.Size([3, 1])]
    while batch.num_rows:
        batch.step()
    for group, (prompts, params) in zip(groups, requests):
        alone = generate(model, tokenizer, prompts, params, logits_processors=[LastTokenBias([])])
        assert [c.token_ids for c in group.outputs()[0].completions] == [c.token_ids for c in alone[0].completions]


def test_groups_whose_processors_read_the_whole_sequence_run_them_one_group_at_a_time(model, tokenizer, encode):
    from aigc_studio.generation.sampler import DecodeBatch

    calls = []
    params = SamplingParams(temperature=1.0, max_tokens=4, min_tokens=4, repetition_penalty=1.2, seed=1)
    batch = DecodeBatch(model, tokenizer)
    for text in ("the quick", "hello"):
        batch.add([encode(text)], params, logits_processors=[LastTokenBias(calls)])
    batch.step()
    batch.step()
    assert calls == [torch.Size([1, len(encode("the quick"))]), torch.Size([1, len(encode("hello"))])]  # own layouts


def test_a_newcomer_is_prefilled_in_the_same_pass_as_the_running_rows(trained_gpt, tokenizer, encode):
    from aigc_studio.generation.sampler import DecodeBatch

    model, passes = trained_gpt, []
    original = model.step_many
    model.step_many = lambda calls, **kwargs: passes.append([ids.shape for ids, _, _ in calls]) or original(calls, **kwargs)
    try:
        params = SamplingParams(temperature=1.0, max_tokens=6, min_tokens=6, seed=2)
        batch = DecodeBatch(model, tokenizer)
        first = batch.add([encode("the quick")], params)
        batch.step()
        batch.step()
        second = batch.add([encode("hello"), encode("a")], params.replace(n=2))
        assert batch.num_rows == 5  # counted before they join, so the engine does not admit past its limit
        while batch.num_rows:
            batch.step()
    finally:
        del model.step_many
    # the running row's token and both prompts (left-padded to one width) in one pass
    assert passes[2] == [torch.Size([1, 1]), torch.Size([2, max(len(encode("hello")), len(encode("a")))])]
    assert first.outputs()[0].completions[0].token_ids == only(generate(model, tokenizer, [encode("the quick")], params)).token_ids
    alone = generate(model, tokenizer, [encode("hello"), encode("a")], params.replace(n=2))
    assert [[c.token_ids for c in o.completions] for o in second.outputs()] == [[c.token_ids for c in o.completions] for o in alone]


def test_a_group_removed_before_its_prefill_never_runs(model, tokenizer, encode):
    from aigc_studio.generation.sampler import DecodeBatch

    batch = DecodeBatch(model, tokenizer)
    kept = batch.add([encode("the quick")], GREEDY)
    dropped = batch.add([encode("hello")], GREEDY)
    batch.remove(dropped)
    assert batch.num_rows == 1 and dropped.active == []
    while batch.num_rows:
        batch.step()
    assert dropped.candidates[0].token_ids == []
    assert kept.outputs()[0].completions[0].text == " brown fox jumps over the lazy dog."


def test_one_row_groups_move_into_the_gaps_departed_groups_leave_and_decode_as_alone(model, tokenizer, encode):
    # Serving: requests leave from the middle of the batch and newcomers join; the batch moves its last
    # one-row groups into the gaps instead of shifting every row, and no group may notice.
    from aigc_studio.generation.sampler import DecodeBatch

    texts = ["the quick", "hello", "cheap food near", "the lazy", "连衣", "dog"]
    lengths = [12, 3, 9, 5, 7, 10]  # the short ones leave first, from the middle of the batch
    requests = [([encode(text)], SamplingParams(temperature=1.0, top_k=20, max_tokens=length, min_tokens=length, seed=seed))
                for seed, (text, length) in enumerate(zip(texts, lengths))]
    # a group of two rows joins too: it stays in one piece, and only one-row groups move
    requests.insert(4, ([encode("hello"), encode("the")], SamplingParams(temperature=1.0, max_tokens=6, n=2, seed=9)))
    batch = DecodeBatch(model, tokenizer)
    groups = [batch.add(prompts, params) for prompts, params in requests[:4]]
    orders = []
    while batch.num_rows:
        batch.step()
        if len(orders) == 1:  # newcomers join after the second step
            groups += [batch.add(prompts, params) for prompts, params in requests[4:]]
        orders.append([groups.index(group) for group in batch.groups])
    assert any(order != sorted(order) for order in orders)  # a later group did move into a gap
    for group, (prompts, params) in zip(groups, requests):
        alone = generate(model, tokenizer, prompts, params)
        assert [[c.token_ids for c in output.completions] for output in group.outputs()] == \
            [[c.token_ids for c in output.completions] for output in alone]
