"""The LSTM language model: embedding tying and its (h, c) decoding state."""

from __future__ import annotations

import pytest
import torch

from aigc_studio.errors import AigcError
from aigc_studio.models.lstm import LSTMConfig


def test_head_is_tied_to_embedding_when_sizes_match(make_lstm):
    model = make_lstm(n_embd=16, hidden_size=16, tie_embeddings=True)
    assert model.ties_embeddings and model.lm_head.weight is model.embed_tokens.weight


def test_head_is_untied_when_hidden_size_differs_from_embedding(make_lstm):
    model = make_lstm(n_embd=16, hidden_size=24, tie_embeddings=True)
    assert not model.ties_embeddings
    assert model.lm_head.weight.shape == (64, 24)


def test_head_is_untied_when_not_asked(make_lstm):
    model = make_lstm(tie_embeddings=False)
    assert model.lm_head.weight is not model.embed_tokens.weight


def test_dropout_applies_between_layers_only_when_there_are_several(make_lstm):
    assert make_lstm(n_layer=2, dropout=0.3).lstm.dropout == 0.3
    assert make_lstm(n_layer=1, dropout=0.3).lstm.dropout == 0.0


def test_state_holds_h_and_c_per_layer_and_row(make_lstm):
    model = make_lstm()
    state = model.init_state(batch_size=3, max_length=10)
    assert state.h.shape == state.c.shape == (2, 3, 16)
    model.step(torch.ones(3, 2, dtype=torch.long), state)
    assert state.h.abs().sum() > 0 and state.c.abs().sum() > 0


@pytest.mark.parametrize("field", ["vocab_size", "n_embd", "hidden_size", "n_layer"])
def test_config_rejects_non_positive_sizes(field):
    with pytest.raises(AigcError, match=f"{field} must be a positive integer") as error:
        LSTMConfig(**{field: 0})
    assert error.value.param == field
