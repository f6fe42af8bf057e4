"""A recurrent language model: token embedding -> multi-layer LSTM -> linear head.

The small, fast baseline next to :mod:`aigc_studio.models.gpt`, with the same interface (docs/architecture.md
"Models"), so the trainer, the sampler and the model directory treat both alike. The decoding state is the
LSTM's (h, c) pair, carried from one :meth:`LSTMLanguageModel.step` to the next.

References: Hochreiter & Schmidhuber 1997 (LSTM); Zaremba et al. 2014 (dropout between LSTM layers);
Press & Wolf 2017 (tying the input embedding to the output head).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from aigc_studio.errors import AigcError


@dataclass
class LSTMConfig:
    """Shape of an :class:`LSTMLanguageModel`; the fields are the ``config.json`` of its model directory."""

    vocab_size: int = 8192
    block_size: int = 256  # training window and generation context (the recurrence itself has no limit)
    n_embd: int = 256
    hidden_size: int = 256
    n_layer: int = 2
    dropout: float = 0.1  # on the embeddings, between LSTM layers and before the head
    # Share the embedding with the head; takes effect only when hidden_size == n_embd, since the head
    # reads hidden states and the tied matrix must fit both ends.
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_embd", "hidden_size", "n_layer"):
            if getattr(self, name) <= 0:
                raise AigcError(f"{name} must be a positive integer, got {getattr(self, name)}", param=name)
        if not 0.0 <= self.dropout < 1.0:
            raise AigcError(f"dropout must be in [0, 1), got {self.dropout}", param="dropout")


class LSTMState:
    """Decoding state of an :class:`LSTMLanguageModel`: hidden and cell states, each (n_layer, B, hidden)."""

    def __init__(self, h: torch.Tensor, c: torch.Tensor) -> None:
        self.h = h
        self.c = c

    @property
    def batch_size(self) -> int:
        return self.h.size(1)

    def reorder(self, index: torch.Tensor) -> None:
        """Select rows of the batch (beam search); ``index`` (B',) may repeat or drop rows."""
        self.h = self.h.index_select(1, index)
        self.c = self.c.index_select(1, index)

    def extend(self, other: LSTMState) -> None:
        """Append the rows of ``other`` (continuous batching: a newcomer joins the running batch)."""
        self.h = torch.cat([self.h, other.h], dim=1)
        self.c = torch.cat([self.c, other.c], dim=1)

    def reserve(self, new_tokens: int) -> None:
        """Nothing to do: the recurrence keeps no per-position memory (the GPT cache's counterpart grows)."""


class LSTMLanguageModel(nn.Module):
    """The recurrent language model; see the module docstring and docs/architecture.md "Models"."""

    model_type: ClassVar[str] = "aigc-lstm"

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)
        # nn.LSTM applies its dropout between layers only, and warns when there is no "between".
        self.lstm = nn.LSTM(config.n_embd, config.hidden_size, num_layers=config.n_layer, batch_first=True,
                            dropout=config.dropout if config.n_layer > 1 else 0.0)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        # A small uniform init (as in PyTorch's word_language_model) keeps a tied head's first logits calm.
        nn.init.uniform_(self.embed_tokens.weight, -0.1, 0.1)
        nn.init.zeros_(self.lm_head.bias)
        if self.ties_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        else:
            nn.init.uniform_(self.lm_head.weight, -0.1, 0.1)

    @property
    def ties_embeddings(self) -> bool:
        """Whether the head shares the embedding matrix (asked for, and the sizes allow it)."""
        return self.config.tie_embeddings and self.config.hidden_size == self.config.n_embd

    def num_parameters(self) -> int:
        """Number of distinct parameters (a tied embedding counts once)."""
        return sum(parameter.numel() for parameter in self.parameters())

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) for every position of ``input_ids`` (B, T) from a zero state, and the mean
        cross-entropy over ``targets`` != -100 when targets are given (else None)."""
        B, T = input_ids.size()
        x = self.dropout(self.embed_tokens(input_ids))  # (B, T, E)
        hidden, _ = self.lstm(x)  # (B, T, H)
        logits = self.lm_head(self.dropout(hidden))  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(B * T, -1).float(), targets.reshape(B * T), ignore_index=-100)
        return logits, loss

    def init_state(self, batch_size: int, max_length: int, device: torch.device | str | None = None) -> LSTMState:
        """A zero :class:`LSTMState` for ``batch_size`` rows.

        ``max_length`` is part of the shared interface; the recurrence keeps no per-position memory, so it
        only has to be positive.

        Raises:
            AigcError: ``max_length`` is not positive.
        """
        if max_length <= 0:
            raise AigcError(f"max_length must be a positive integer, got {max_length}", param="max_length")
        weight = self.embed_tokens.weight
        shape = (self.config.n_layer, batch_size, self.config.hidden_size)
        device = weight.device if device is None else torch.device(device)
        return LSTMState(torch.zeros(shape, device=device, dtype=weight.dtype),
                         torch.zeros(shape, device=device, dtype=weight.dtype))

    @torch.no_grad()
    def step(self, input_ids: torch.Tensor, state: LSTMState, attention_mask: torch.Tensor | None = None, *,
             last_only: bool = False) -> torch.Tensor:
        """Consume new tokens (B, T) after those already in ``state``, update it in place, return logits (B, T, V).

        Args:
            input_ids: the prompt at prefill (left-padded for a batch), then one token per row.
            state: the (h, c) pair from :meth:`init_state`.
            attention_mask: (B, T), 1 for real tokens and 0 for padding; None means all real. A padding
                token leaves its row's state untouched, so a padded row decodes exactly like the row alone.
            last_only: return the last position's logits only, (B, 1, V).
        """
        x = self.embed_tokens(input_ids)  # (B, T, E)
        if attention_mask is None or bool(attention_mask.all()):
            hidden, (state.h, state.c) = self.lstm(x, (state.h, state.c))  # (B, T, H)
            return self.lm_head(hidden[:, -1:] if last_only else hidden)
        # Padding must not advance the recurrence, so walk the positions and keep the old state where the
        # mask is 0. Only padded prefills and finished rows take this path; they are short or rare.
        real = attention_mask.bool()
        hidden_steps = []
        for t in range(input_ids.size(1)):
            hidden_t, (h, c) = self.lstm(x[:, t:t + 1], (state.h, state.c))  # (B, 1, H)
            keep = real[:, t].view(1, -1, 1)  # (1, B, 1) broadcast over layers and units
            state.h, state.c = torch.where(keep, h, state.h), torch.where(keep, c, state.c)
            hidden_steps.append(hidden_t)
        return self.lm_head(hidden_steps[-1] if last_only else torch.cat(hidden_steps, dim=1))  # (B, T or 1, V)
