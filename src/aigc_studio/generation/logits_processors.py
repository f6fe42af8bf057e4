"""Logits processors: small functions that reshape next-token scores before a token is picked.

A processor is any callable ``(logits, token_ids) -> logits``:

* ``logits`` (B, V) float: the scores for the next token of each row;
* ``token_ids`` (B, T) long: each row's sequence so far: its prompt, left-padded with the pad id to the
  batch's longest prompt (``prompt_length`` columns), then the tokens generated so far.

A processor returns a new tensor and never changes its inputs, so the sampler can still take log-probabilities
from the raw logits. Each one is a whole-tensor operation on (B, V): no Python loop over rows or the vocabulary.

A processor that reads only each row's last few tokens says how many in an int attribute ``context_width``
(0: none; the sampling warpers and the watermark). The batched sampler then runs requests with equal
processors through them in one call, giving them just those last columns, whatever their prompts' widths;
a processor without the attribute is given its own request's layout as above.

:func:`build_logits_processors` puts them in this fixed order (docs/generation.md explains why):

1. :class:`RepetitionPenalty`        (CTRL, Keskar et al. 2019)
2. :class:`PresenceFrequencyPenalty` (the OpenAI formula)
3. :class:`NoRepeatNGram`            (Paulus et al. 2017)
4. :class:`MinTokens`                (end-of-sequence suppressed until ``min_tokens`` new tokens)
5. the watermark                     (``params.watermark``: :class:`~aigc_studio.safety.watermark.WatermarkProcessor`,
                                      Kirchenbauer et al. 2023, after the penalties and before the temperature)
6. the caller's extra processors     where Hugging Face runs ``logits_processor=``
7. :class:`Temperature`
8. :class:`TopK`                     (Fan et al. 2018)
9. :class:`TopP`                     (nucleus sampling, Holtzman et al. 2019)
10. :class:`MinP`                    (Nguyen et al. 2024)

Steps 7-10 only change which token is *sampled*; they never move the most likely token, so greedy decoding and
beam search leave them out. A processor whose setting turns it off is not built at all, so it costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from aigc_studio.generation.sampling_params import SamplingParams

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RepetitionPenalty:
    """CTRL's repetition penalty over the prompt and the completion: a seen token's positive logit is divided
    by ``penalty`` and its negative logit multiplied by it (Keskar et al. 2019, "penalized sampling"; the same
    rule as Hugging Face's ``repetition_penalty``).

    ``pad_id`` (the left padding of batched prompts) is not a seen token: its logit is left as it was, so a
    padded row is scored exactly as the same row alone.
    """

    penalty: float
    pad_id: int | None = None

    def __call__(self, logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        seen = logits.gather(1, token_ids)  # (B, T): the logit of every token in each row's sequence
        penalised = torch.where(seen > 0, seen / self.penalty, seen * self.penalty)
        out = logits.scatter(1, token_ids, penalised)  # a token seen twice gets the same value twice
        if self.pad_id is not None:
            out[:, self.pad_id] = logits[:, self.pad_id]
        return out


@dataclass(frozen=True)
class PresenceFrequencyPenalty:
    """OpenAI's penalties on the completion so far (the prompt is not counted, as in vLLM):
    ``logit[j] -= frequency * count[j] + presence * (count[j] > 0)``.

    ``prompt_length`` is the width of the (padded) prompt at the start of ``token_ids``.
    """

    presence: float
    frequency: float
    prompt_length: int

    def __call__(self, logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        completion = token_ids[:, self.prompt_length:]  # (B, t)
        if completion.size(1) == 0:
            return logits
        counts = torch.zeros_like(logits).scatter_add_(1, completion, torch.ones_like(completion, dtype=logits.dtype))
        return logits - self.frequency * counts - self.presence * (counts > 0).to(logits.dtype)


@dataclass(frozen=True)
class NoRepeatNGram:
    """Forbid every token that would complete an n-gram already in the sequence (Paulus et al. 2017;
    Hugging Face's ``no_repeat_ngram_size``). N-grams touching the left padding do not count.
    """

    ngram_size: int
    pad_id: int | None = None

    def __call__(self, logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        n = self.ngram_size
        if token_ids.size(1) < n:
            return logits
        windows = token_ids.unfold(1, n, 1)  # (B, W, n): every n-gram of each row
        last_tokens = token_ids[:, token_ids.size(1) - n + 1:]  # (B, n-1): what the next token would extend
        repeats = (windows[:, :, :-1] == last_tokens[:, None, :]).all(-1)  # (B, W): n-grams with that prefix
        if self.pad_id is not None:
            repeats &= (windows != self.pad_id).all(-1)
        # scatter_add, not scatter: several n-grams can end in the same token and a plain scatter keeps an
        # arbitrary one of the written values.
        hits = torch.zeros_like(logits).scatter_add_(1, windows[:, :, -1], repeats.to(logits.dtype))
        return logits.masked_fill(hits > 0, float("-inf"))


@dataclass(frozen=True)
class MinTokens:
    """Forbid the end-of-sequence and stop tokens until the completion has ``min_tokens`` tokens
    (Hugging Face's ``min_new_tokens``, vLLM's ``min_tokens``)."""

    min_tokens: int
    eos_token_ids: tuple[int, ...]
    prompt_length: int

    def __call__(self, logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        if token_ids.size(1) - self.prompt_length >= self.min_tokens:
            return logits
        out = logits.clone()
        # One column at a time with plain int indices: an index tensor built here would be a host-to-device
        # copy (and on CUDA a synchronisation) every step.
        for token_id in self.eos_token_ids:
            out[:, token_id] = float("-inf")
        return out


@dataclass(frozen=True)
class Temperature:
    """Divide the logits by the temperature: < 1 sharpens the distribution, > 1 flattens it."""

    context_width: ClassVar[int] = 0  # reads no tokens
    temperature: float

    def __call__(self, logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature


@dataclass(frozen=True)
class TopK:
    """Keep the ``k`` highest logits of each row, drop the rest (of tokens tied at the k-th value, topk's
    choice is kept, so exactly k remain)."""

    context_width: ClassVar[int] = 0  # reads no tokens
    k: int

    def __call__(self, logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        if self.k >= logits.size(-1):
            return logits
        best = logits.topk(self.k, dim=-1, sorted=False)  # (B, k)
        # Writing k values into a fresh -inf tensor is several times faster than comparing and masking all V.
        return torch.full_like(logits, float("-inf")).scatter_(1, best.indices, best.values)


@dataclass(frozen=True)
class TopP:
    """Keep the smallest set of most likely tokens whose probabilities sum to at least ``p``."""

    context_width: ClassVar[int] = 0  # reads no tokens
    p: float

    def __call__(self, logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        sorted_logits, order = logits.sort(dim=-1)  # ascending, so the dropped tokens form a prefix
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
        drop_sorted = cumulative <= 1 - self.p
        drop_sorted[:, -1] = False  # the most likely token always stays
        drop = drop_sorted.scatter(1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))


@dataclass(frozen=True)
class MinP:
    """Drop tokens whose probability is below ``p`` times the most likely token's.

    Done on logits: ``prob_i < p * prob_max`` is ``logit_i < logit_max + log(p)``, which needs no softmax.
    """

    context_width: ClassVar[int] = 0  # reads no tokens
    p: float

    def __call__(self, logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        threshold = logits.max(dim=-1, keepdim=True).values + math.log(self.p)  # (B, 1)
        return logits.masked_fill(logits < threshold, float("-inf"))


def build_logits_processors(
    params: SamplingParams,
    *,
    prompt_length: int,
    eos_token_ids: Sequence[int],
    pad_id: int | None = None,
    vocab_size: int | None = None,
    extra: Sequence[LogitsProcessor] = (),
    warpers: bool = True,
) -> list[LogitsProcessor]:
    """The processors ``params`` asks for, in the documented order (see the module docstring).

    Args:
        params: the request's sampling parameters.
        prompt_length: width of the left-padded prompt at the start of ``token_ids``.
        eos_token_ids: the tokens that end a candidate (``<eos>`` plus ``params.stop_token_ids``), held back
            by ``min_tokens``.
        pad_id: the id used for left padding, ignored by the repetition and n-gram rules.
        vocab_size: the model's vocabulary size; needed when ``params.watermark`` is set (green lists are
            drawn from the whole vocabulary).
        extra: the caller's own processors (e.g. the watermark), run after the penalties and before the
            temperature.
        warpers: False leaves out temperature, top-k, top-p and min-p (beam search). They are also left out
            when ``params.temperature`` is 0, since they never change the most likely token.

    Returns:
        The processors to apply one after the other; empty when nothing is enabled.
    """
    processors: list[LogitsProcessor] = []
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(params.repetition_penalty, pad_id))
    if params.presence_penalty != 0.0 or params.frequency_penalty != 0.0:
        processors.append(PresenceFrequencyPenalty(params.presence_penalty, params.frequency_penalty, prompt_length))
    if params.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGram(params.no_repeat_ngram_size, pad_id))
    if params.min_tokens > 0 and eos_token_ids:
        processors.append(MinTokens(params.min_tokens, tuple(eos_token_ids), prompt_length))
    if params.watermark is not None:
        if vocab_size is None:
            raise ValueError("build_logits_processors needs vocab_size to build the watermark")
        # Imported here: the safety package loads only when a watermark is asked for.
        from aigc_studio.safety.watermark import WatermarkProcessor

        processors.append(WatermarkProcessor(params.watermark, vocab_size))
    processors.extend(extra)
    if warpers and not params.greedy:
        if params.temperature != 1.0:
            processors.append(Temperature(params.temperature))
        if params.top_k > 0:
            processors.append(TopK(params.top_k))
        if params.top_p < 1.0:
            processors.append(TopP(params.top_p))
        if params.min_p > 0.0:
            processors.append(MinP(params.min_p))
    return processors


def apply_logits_processors(processors: Sequence[LogitsProcessor], logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Run ``processors`` one after the other on ``logits`` (B, V) given ``token_ids`` (B, T)."""
    for processor in processors:
        logits = processor(logits, token_ids)
    return logits
