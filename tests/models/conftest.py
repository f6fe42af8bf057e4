"""Tiny seeded models and a character tokenizer shared by the model tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from aigc_studio.data.tokenizer import TextTokenizer, train_tokenizer
from aigc_studio.models.gpt import GPT, GPTConfig
from aigc_studio.models.lstm import LSTMConfig, LSTMLanguageModel

TINY_VOCAB_SIZE = 64


@pytest.fixture
def make_gpt() -> Callable[..., GPT]:
    """Build a seeded 2-layer, 32-wide GPT in eval mode; keyword arguments override GPTConfig fields."""

    def build(**overrides) -> GPT:
        torch.manual_seed(0)
        fields = {"vocab_size": TINY_VOCAB_SIZE, "block_size": 32, "n_layer": 2, "n_head": 4, "n_embd": 32, **overrides}
        return GPT(GPTConfig(**fields)).eval()

    return build


@pytest.fixture
def make_lstm() -> Callable[..., LSTMLanguageModel]:
    """Build a seeded 2-layer, 16-wide LSTM in eval mode; keyword arguments override LSTMConfig fields."""

    def build(**overrides) -> LSTMLanguageModel:
        torch.manual_seed(0)
        fields = {"vocab_size": TINY_VOCAB_SIZE, "block_size": 32, "n_embd": 16, "hidden_size": 16, "n_layer": 2, **overrides}
        return LSTMLanguageModel(LSTMConfig(**fields)).eval()

    return build


@pytest.fixture(params=["gpt", "lstm"])
def model(request: pytest.FixtureRequest, make_gpt, make_lstm) -> GPT | LSTMLanguageModel:
    """Each model family, tiny and in eval mode."""
    return make_gpt() if request.param == "gpt" else make_lstm()


@pytest.fixture(scope="session")
def char_tokenizer() -> TextTokenizer:
    """A character tokenizer whose ids fit the tiny models' vocabulary."""
    tokenizer = train_tokenizer(["name: Aromi | food: Italian. A cheap Italian place near the river."], kind="char")
    assert tokenizer.vocab_size <= TINY_VOCAB_SIZE
    return tokenizer
