"""A byte-level BPE tokenizer and tiny GPT/LSTM models trained for a second on five sentences.

Trained, not random: a random tiny model's next-token distribution is almost flat, so its greedy choices sit
on near-ties that float noise can flip, and it almost never ends with ``<eos>``. After 150 steps both models
continue the sentences they saw and end them with ``<eos>``, which gives the tests sharp, known outputs.
"""

from __future__ import annotations

import pytest
import torch

from aigc_studio.data.tokenizer import TextTokenizer, train_tokenizer
from aigc_studio.models.gpt import GPT, GPTConfig
from aigc_studio.models.lstm import LSTMConfig, LSTMLanguageModel

SENTENCES = [
    "the quick brown fox jumps over the lazy dog.",
    "a red dress, simple and elegant.",
    "hello world, hello there!",
    "连衣裙简约时尚，宽松舒适。",  # a small BPE vocabulary splits these characters over several byte tokens
    "cheap food near the river, family friendly.",
]
CONTEXT = 64
TRAIN_STEPS = 150


@pytest.fixture(scope="session")
def tokenizer() -> TextTokenizer:
    """Byte-level BPE with only 300 ids, so most Chinese characters take two or three tokens."""
    return train_tokenizer(SENTENCES, kind="bpe", vocab_size=300)


def _train(model: torch.nn.Module, tokenizer: TextTokenizer) -> torch.nn.Module:
    rows = [[tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id] for text in SENTENCES]
    width = max(len(row) for row in rows) - 1
    inputs = torch.full((len(rows), width), tokenizer.pad_id)
    targets = torch.full((len(rows), width), -100)
    for index, row in enumerate(rows):
        inputs[index, :len(row) - 1] = torch.tensor(row[:-1])
        targets[index, :len(row) - 1] = torch.tensor(row[1:])
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for _ in range(TRAIN_STEPS):
        _, loss = model(inputs, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_gpt(tokenizer: TextTokenizer) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=CONTEXT, n_layer=1, n_head=2, n_embd=32)
    return _train(GPT(config), tokenizer)


@pytest.fixture(scope="session")
def trained_lstm(tokenizer: TextTokenizer) -> LSTMLanguageModel:
    torch.manual_seed(0)
    config = LSTMConfig(vocab_size=tokenizer.vocab_size, block_size=CONTEXT, n_embd=32, hidden_size=32, n_layer=1, dropout=0.0)
    return _train(LSTMLanguageModel(config), tokenizer)


@pytest.fixture(params=["gpt", "lstm"])
def model(request: pytest.FixtureRequest) -> GPT | LSTMLanguageModel:
    """Each model family, tiny, trained and in eval mode."""
    return request.getfixturevalue(f"trained_{request.param}")


@pytest.fixture
def encode(tokenizer: TextTokenizer):
    """Turn text into a text-model prompt: ``<bos>`` then the text's tokens."""
    return lambda text: [tokenizer.bos_id, *tokenizer.encode(text)]
