"""What the sampling loop and beam search share: context limits, prompt checks, left padding, stop strings.

These helpers hold no model and no loop; :mod:`~aigc_studio.generation.sampler` and
:mod:`~aigc_studio.generation.beam_search` call them so both decoders treat prompts and stops the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from numbers import Integral

import torch
from torch import nn

from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import SamplingParams

# What byte-level BPE decodes an incomplete UTF-8 character to; it may still become a real character.
REPLACEMENT_CHARACTER = "\ufffd"


def model_device(model: nn.Module) -> torch.device:
    """The device the model's weights live on (where every decoding tensor is made)."""
    return next(model.parameters()).device


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with dropout off, then give the model back in the mode it came in (e.g. mid-training)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def context_length(model: nn.Module, max_length: int | None = None) -> int | None:
    """The most tokens, prompt included, that one sequence may hold.

    Args:
        model: a model of :mod:`aigc_studio.models`; its ``config.block_size`` is its context when it has one
            (an LSTM has none: its state does not grow with the sequence).
        max_length: the caller's own limit, at most the model's context; None uses the model's.

    Returns:
        The limit, or None when neither the model nor the caller sets one.

    Raises:
        AigcError: ``max_length`` is not a positive integer or exceeds the model's context.
    """
    model_limit = getattr(getattr(model, "config", None), "block_size", None)
    if max_length is None:
        return model_limit
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise AigcError(f"max_length={max_length!r} must be an integer >= 2 (a prompt token and a new one)", param="max_length")
    if model_limit is not None and max_length > model_limit:
        raise AigcError(f"max_length={max_length} is longer than the model's context of {model_limit} tokens; "
                        f"use at most {model_limit}", param="max_length")
    return max_length


def check_prompts(prompts: Sequence[Sequence[int]], vocab_size: int, context: int | None) -> None:
    """Check that every prompt is a non-empty list of known token ids that leaves room for a new token.

    Raises:
        AigcError: no prompts, an empty prompt, an id outside the vocabulary, or a prompt that fills the
            context (the message gives both lengths).
    """
    if not prompts:
        raise AigcError("no prompts given; pass at least one prompt", param="prompt")
    for index, prompt in enumerate(prompts):
        where = "prompt" if len(prompts) == 1 else f"prompt {index}"
        if not isinstance(prompt, (list, tuple)) or not all(isinstance(token, Integral) for token in prompt):
            raise AigcError(f"{where} must be a list of token ids, got {type(prompt).__name__}; "
                            "pass one list of ints per prompt", param="prompt")
        if len(prompt) == 0:
            raise AigcError(f"{where} is empty; start it with at least the <bos> token", param="prompt")
        if min(prompt) < 0 or max(prompt) >= vocab_size:
            bad = next(token for token in prompt if not 0 <= token < vocab_size)
            raise AigcError(f"{where} holds token id {bad}, outside the model's vocabulary of {vocab_size}; "
                            "encode it with the model's own tokenizer", param="prompt")
        if context is not None and len(prompt) >= context:
            raise AigcError(f"{where} is {len(prompt)} tokens; the model's context is {context}, which leaves no "
                            "room to generate; shorten the prompt", param="prompt")


def stop_token_ids(eos_id: int, params: SamplingParams, vocab_size: int) -> tuple[int, ...]:
    """``<eos>`` followed by ``params.stop_token_ids`` without repeats.

    Raises:
        AigcError: a stop token id outside the vocabulary.
    """
    for token_id in params.stop_token_ids:
        if token_id >= vocab_size:
            raise AigcError(f"stop token id {token_id} is outside the model's vocabulary of {vocab_size}", param="stop_token_ids")
    return tuple(dict.fromkeys([eos_id, *params.stop_token_ids]))


def new_token_budget(prompt_length: int, params: SamplingParams, context: int | None) -> int:
    """How many tokens a candidate of this prompt may generate: ``max_tokens`` clipped to the context left."""
    return params.max_tokens if context is None else min(params.max_tokens, context - prompt_length)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stack prompts into (B, T) with padding on the left, so every row's last token is a real one.

    Returns:
        ``(input_ids, attention_mask)``; the mask (B, T) is 1 on real tokens and 0 on padding, or None when
        every prompt has the same length (models then take their unpadded fast path).
    """
    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, width - len(prompt):] = 1
    padded = any(len(prompt) != width for prompt in prompts)
    return input_ids.to(device), attention_mask.to(device) if padded else None


def find_stop_string(text: str, stop: Sequence[str], start: int = 0) -> int:
    """Where the earliest stop string at or after ``start`` begins in ``text``, or -1 when none does."""
    positions = [position for position in (text.find(stop_string, start) for stop_string in stop) if position >= 0]
    return min(positions, default=-1)


def partial_stop_length(text: str, stop: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that is the beginning of a stop string (held back when streaming)."""
    for length in range(min(len(text), max((len(s) for s in stop), default=0)), 0, -1):
        tail = text[-length:]
        if any(stop_string.startswith(tail) for stop_string in stop):
            return length
    return 0
