"""The bar constraint: every bar exact, the right number of bars, the tonic at the end, even from a random model."""

from __future__ import annotations

import pytest
import torch

from aigc_studio.data.tokenizer import train_tokenizer
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampler import generate
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.gpt import GPT, GPTConfig
from aigc_studio.music.constraints import BarConstraint, max_new_tokens
from aigc_studio.music.tokens import MODE_TONIC, all_note_tokens, header, parse_meter, parse_target


@pytest.fixture(scope="module")
def random_model():
    """An untrained 1-layer GPT over every music token: its choices are arbitrary, so only the constraint shapes them."""
    tokenizer = train_tokenizer(["major minor 2/4 3/4 6/8 7/8 irish | " + " ".join(all_note_tokens())], kind="word")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=512, n_layer=1, n_head=2, n_embd=16)).eval()
    return model, tokenizer


@pytest.mark.parametrize("meter_text, mode, bars", [("2/4", "major", 4), ("6/8", "minor", 8), ("7/8", "major", 3)])
def test_every_bar_is_exact_and_the_tune_ends_on_the_tonic(random_model, meter_text: str, mode: str, bars: int) -> None:
    model, tokenizer = random_model
    meter = parse_meter(meter_text)
    prompt = [tokenizer.bos_id, *tokenizer.encode(header(mode, meter, "irish")), tokenizer.sep_id]
    constraint = BarConstraint(tokenizer, meter, bars, mode, prompt_length=len(prompt))
    params = SamplingParams(temperature=1.5, max_tokens=max_new_tokens(bars, meter), n=6, seed=1)
    completions = generate(model, tokenizer, [prompt], params, logits_processors=[constraint])[0].completions
    for completion in completions:
        assert completion.finish_reason == "stop"
        parsed = parse_target(tokenizer.decode(completion.token_ids))
        assert parsed.complete and len(parsed.bars) == bars
        assert parsed.bar_units == [meter.bar_units] * bars
        last_pitch, _ = parsed.bars[-1][-1]
        assert last_pitch is not None and last_pitch % 12 == MODE_TONIC[mode]


def test_a_row_whose_allowed_tokens_were_all_removed_still_gets_one(random_model) -> None:
    model, tokenizer = random_model
    meter = parse_meter("2/4")
    constraint = BarConstraint(tokenizer, meter, 2, "major", prompt_length=1)
    full_bar = tokenizer.encode("C5_8")  # the bar is full: only '|' is allowed next
    token_ids = torch.tensor([[tokenizer.bos_id, *full_bar]])
    logits = torch.zeros(1, tokenizer.vocab_size)
    logits[0, tokenizer.encode("|")[0]] = float("-inf")  # e.g. a repetition rule removed it
    out = constraint(logits, token_ids)
    assert torch.isfinite(out).sum() == 1 and out[0, tokenizer.encode("|")[0]] == 0


def test_a_tokenizer_without_music_tokens_is_refused() -> None:
    tokenizer = train_tokenizer(["plain words only"], kind="word")
    with pytest.raises(AigcError, match="no music tokens"):
        BarConstraint(tokenizer, parse_meter("4/4"), 4, "major", prompt_length=1)
