"""Batched, KV-cached sampling: :func:`generate` for many prompts at once, :func:`stream` for one as it goes.

The loop, once per batch of prompts:

1. left-pad the prompts and run them through the model once (prefill), then copy each prompt's decoding
   state to its ``n`` candidates;
2. every step, for all unfinished candidates together: apply the logits processors, pick the next token
   (argmax when greedy, else inverse-CDF sampling with the candidate's own random numbers), read the token and
   its raw log-probability back to the CPU (the step's only device-to-host copy), and feed the tokens back;
3. a candidate finishes on ``<eos>``, a stop token, a stop string or its token budget; finished candidates
   leave the batch (``state.reorder`` drops their rows), so they cost nothing afterwards.

Randomness: candidate j of a request with seed s draws its uniforms from ``numpy.random.default_rng([s, j])``
before decoding starts, and step t uses the t-th one. Its tokens therefore depend only on (s, j), the prompt
and the model, never on the batch it shares. Greedy decoding (temperature 0) uses no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from aigc_studio.data.tokenizer import TextTokenizer
from aigc_studio.errors import AigcError
from aigc_studio.generation.beam_search import beam_search
from aigc_studio.generation.decoding import (
    REPLACEMENT_CHARACTER,
    check_prompts,
    context_length,
    eval_mode,
    find_stop_string,
    left_pad,
    model_device,
    new_token_budget,
    partial_stop_length,
    stop_token_ids,
)
from aigc_studio.generation.logits_processors import LogitsProcessor, apply_logits_processors, build_logits_processors
from aigc_studio.generation.outputs import Completion, FinishReason, GenerationOutput, StreamEvent
from aigc_studio.generation.sampling_params import SamplingParams


@dataclass
class _Candidate:
    """One sequence being generated: what it has produced so far, all on the CPU."""

    prompt_index: int
    candidate_index: int
    budget: int  # most new tokens it may generate
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[int, float]] = field(default_factory=list)
    text: str = ""  # kept current every step only when stop strings or streaming need it
    searched: int = 0  # characters of `text` already searched for stop strings
    finish_reason: FinishReason | None = None

    def to_completion(self, with_top_logprobs: bool) -> Completion:
        assert self.finish_reason is not None, "every candidate finishes within its budget"
        return Completion(
            token_ids=self.token_ids,
            text=self.text,
            finish_reason=self.finish_reason,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs if with_top_logprobs else None,
            cumulative_logprob=math.fsum(self.logprobs),
        )


def sample_with_uniforms(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Draw one token per row from softmax(logits) by inverting the CDF at the given uniforms.

    Args:
        logits: (B, V) processed scores; -inf marks tokens that must not be drawn.
        uniforms: (B,) numbers in [0, 1), one per row.

    Returns:
        (B,) token ids; token i is drawn exactly when the uniform falls in its slice of the CDF, so a token with
        zero probability is never drawn.
    """
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V), non-decreasing
    total = cdf[:, -1:]  # (B, 1), 1 up to rounding
    # Keep the threshold strictly below the total so rounding can never run past the last possible token.
    threshold = torch.minimum(uniforms[:, None].to(cdf.dtype) * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, threshold, right=True).squeeze(1)  # first index whose CDF exceeds it


def _candidate_uniforms(candidates: Sequence[_Candidate], seed: int | None, steps: int) -> torch.Tensor:
    """(B, steps) uniforms; row i comes from candidate i's own generator (see the module docstring)."""
    # Without a seed each candidate gets a fresh one from torch's global generator, so torch.manual_seed
    # still makes an unseeded run repeatable.
    seeds = [seed] * len(candidates) if seed is not None else torch.randint(0, 2**62, (len(candidates),)).tolist()
    rows = [np.random.default_rng([row_seed, candidate.candidate_index]).random(steps)
            for row_seed, candidate in zip(seeds, candidates)]
    return torch.from_numpy(np.stack(rows)).float()


def _context_groups(prompt_lengths: Sequence[int], budgets: Sequence[int], context: int | None) -> list[list[int]]:
    """Split prompt indices into batches whose left-padded layout fits the model's context.

    Padding takes cache slots too: a batch needs ``longest prompt + longest budget - 1`` slots. When a short
    prompt with a long budget meets a long prompt, they are decoded in separate batches so that neither
    loses tokens to the other's padding; in the usual case everything is one batch.
    """
    if context is None:
        return [list(range(len(prompt_lengths)))]
    groups: list[list[int]] = []
    current: list[int] = []
    width = steps = 0
    for index in sorted(range(len(prompt_lengths)), key=lambda i: -prompt_lengths[i]):
        if current and max(width, prompt_lengths[index]) + max(steps, budgets[index]) - 1 > context:
            groups.append(sorted(current))
            current, width, steps = [], 0, 0
        current.append(index)
        width, steps = max(width, prompt_lengths[index]), max(steps, budgets[index])
    groups.append(sorted(current))
    return groups


def _decode(
    model: nn.Module,
    tokenizer: TextTokenizer,
    prompts: Sequence[Sequence[int]],
    candidates: list[_Candidate],
    params: SamplingParams,
    *,
    eos_token_ids: tuple[int, ...],
    extra_processors: Sequence[LogitsProcessor],
    text_every_step: bool,
) -> Iterator[list[_Candidate]]:
    """Decode ``params.n`` candidates of each prompt (``candidates`` in prompt-major order) together.

    Yields, after every step, the candidates that received a token in it (finished ones have their
    ``finish_reason`` and final ``text`` set). ``text_every_step`` keeps ``text`` current for streaming.
    """
    device = model_device(model)
    n = params.n
    input_ids, attention_mask = left_pad(prompts, tokenizer.pad_id, device)
    prompt_length = input_ids.size(1)
    max_steps = max(candidate.budget for candidate in candidates)

    # 1. prefill each distinct prompt once, then copy its state and last logits to its n candidates.
    # The last sampled token is never fed back, hence max_steps - 1 cache slots after the prompt.
    state = model.init_state(len(prompts), prompt_length + max_steps - 1, device=device)
    logits = model.step(input_ids, state, attention_mask)[:, -1]  # (P, V)
    if n > 1:
        expand = torch.arange(len(prompts), device=device).repeat_interleave(n)
        state.reorder(expand)
        logits = logits.index_select(0, expand)
        input_ids = input_ids.index_select(0, expand)
    # Prompt and generated tokens in one preallocated buffer, so processors see a view, never a concatenation.
    token_buffer = torch.empty(len(candidates), prompt_length + max_steps, dtype=torch.long, device=device)
    token_buffer[:, :prompt_length] = input_ids
    uniforms = None if params.greedy else _candidate_uniforms(candidates, params.seed, max_steps).to(device)

    processors = build_logits_processors(params, prompt_length=prompt_length, eos_token_ids=eos_token_ids,
                                         pad_id=tokenizer.pad_id, extra=extra_processors)
    top_k = params.logprobs or 0
    longest_stop = max((len(stop) for stop in params.stop), default=0)
    active = candidates
    for step in range(max_steps):
        # 2. pick the next token of every active candidate
        raw_logits = logits.float()
        scores = apply_logits_processors(processors, raw_logits, token_buffer[:, :prompt_length + step])
        next_tokens = scores.argmax(dim=-1) if uniforms is None else sample_with_uniforms(scores, uniforms[:, step])
        token_buffer[:, prompt_length + step] = next_tokens

        # 3. one device-to-host copy per step: token ids (exact in float64), raw logprobs, top alternatives
        raw_logprobs = raw_logits.log_softmax(dim=-1)
        readout = [next_tokens[:, None].double(), raw_logprobs.gather(1, next_tokens[:, None]).double()]
        if top_k:
            top = raw_logprobs.topk(top_k, dim=-1)
            readout += [top.indices.double(), top.values.double()]
        rows = torch.cat(readout, dim=1).tolist()

        # 4. bookkeeping on the CPU: record the token, then decide whether the candidate is done
        for candidate, row in zip(active, rows):
            token_id = int(row[0])
            candidate.token_ids.append(token_id)
            candidate.logprobs.append(row[1])
            if top_k:
                candidate.top_logprobs.append(dict(zip(map(int, row[2:2 + top_k]), row[2 + top_k:])))
            _update_finish(candidate, tokenizer, params, eos_token_ids, longest_stop, text_every_step)
        yield active

        # 5. finished candidates leave the batch; feed the others' tokens back
        keep = [row for row, candidate in enumerate(active) if candidate.finish_reason is None]
        if not keep:
            return
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            state.reorder(index)
            token_buffer, next_tokens = token_buffer.index_select(0, index), next_tokens.index_select(0, index)
            uniforms = None if uniforms is None else uniforms.index_select(0, index)
            active = [active[row] for row in keep]
        logits = model.step(next_tokens[:, None], state)[:, -1]  # (B, V)


def _update_finish(
    candidate: _Candidate,
    tokenizer: TextTokenizer,
    params: SamplingParams,
    eos_token_ids: tuple[int, ...],
    longest_stop: int,
    text_every_step: bool,
) -> None:
    """Set ``candidate.finish_reason`` (and its final text) when its newest token ends it."""
    token_ids = candidate.token_ids
    if token_ids[-1] in eos_token_ids:
        candidate.finish_reason = "stop"
        candidate.text = tokenizer.decode(token_ids[:-1])  # the stop token is not part of the text
        return
    if params.stop or text_every_step:
        candidate.text = tokenizer.decode(token_ids)
    if params.stop:
        # Only text that became final since the last search can complete a stop string; stop strings ending
        # within the first min_tokens tokens do not count (vLLM's rule).
        if len(token_ids) >= params.min_tokens:
            start = max(0, candidate.searched - (longest_stop - 1))
            position = find_stop_string(candidate.text, params.stop, start)
            if position >= 0:
                candidate.finish_reason = "stop"
                candidate.text = candidate.text[:position]
                return
        candidate.searched = len(candidate.text.rstrip(REPLACEMENT_CHARACTER))
    if len(token_ids) >= candidate.budget:
        candidate.finish_reason = "length"
        if not (params.stop or text_every_step):
            candidate.text = tokenizer.decode(token_ids)


def _prepare(model: nn.Module, tokenizer: TextTokenizer, prompts: Sequence[Sequence[int]], params: SamplingParams,
             max_length: int | None) -> tuple[int | None, tuple[int, ...]]:
    """Check the request; return the context limit and the tokens that end a candidate."""
    params.validate()
    vocab_size = model.config.vocab_size
    context = context_length(model, max_length)
    check_prompts(prompts, vocab_size, context)
    return context, stop_token_ids(tokenizer.eos_id, params, vocab_size)


@torch.inference_mode()
def generate(
    model: nn.Module,
    tokenizer: TextTokenizer,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    *,
    logits_processors: Sequence[LogitsProcessor] | None = None,
    max_length: int | None = None,
) -> list[GenerationOutput]:
    """Generate ``params.n`` candidates for every prompt, all decoded in one batch.

    With ``params.num_beams > 1`` each prompt goes through :func:`beam_search` instead and gets its
    ``params.n`` best beams.

    Args:
        model: a model with the ``init_state``/``step`` decoding contract (docs/architecture.md, "Models").
        tokenizer: the model's tokenizer (pad, eos and decoding).
        prompts: token ids of each prompt, special tokens included (e.g. ``<bos> source <sep>``).
        params: sampling settings, shared by all prompts.
        logits_processors: extra processors (e.g. the watermark) run after the penalties, before temperature.
        max_length: a context limit below the model's own (prompt + completion), or None for the model's.

    Returns:
        One :class:`GenerationOutput` per prompt, in order, each with its candidates in candidate order.

    Raises:
        AigcError: invalid params, an empty prompt, unknown token ids, or a prompt that fills the context.
    """
    context, eos_token_ids = _prepare(model, tokenizer, prompts, params, max_length)
    if params.num_beams > 1:
        return [GenerationOutput(list(prompt), beam_search(model, tokenizer, prompt, params, max_length=max_length))
                for prompt in prompts]
    budgets = [new_token_budget(len(prompt), params, context) for prompt in prompts]
    candidates = [[_Candidate(index, j, budgets[index]) for j in range(params.n)] for index in range(len(prompts))]
    with eval_mode(model):
        for group in _context_groups([len(prompt) for prompt in prompts], budgets, context):
            group_candidates = [candidate for index in group for candidate in candidates[index]]
            for _ in _decode(model, tokenizer, [prompts[index] for index in group], group_candidates, params,
                             eos_token_ids=eos_token_ids, extra_processors=logits_processors or (), text_every_step=False):
                pass
    with_top = bool(params.logprobs)
    return [GenerationOutput(list(prompt), [candidate.to_completion(with_top) for candidate in candidates[index]])
            for index, prompt in enumerate(prompts)]


def stream(
    model: nn.Module,
    tokenizer: TextTokenizer,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    *,
    logits_processors: Sequence[LogitsProcessor] | None = None,
    max_length: int | None = None,
) -> Iterator[StreamEvent]:
    """Generate one candidate for one prompt, yielding each token and the text it makes final.

    Text is held back while it may still change: an incomplete UTF-8 character (byte-level BPE can split a
    Chinese character over two tokens; it decodes to U+FFFD until complete) or the beginning of a stop string.
    Joining the events' text gives exactly the text :func:`generate` returns for the same seed.

    Args:
        model, tokenizer, params, logits_processors, max_length: as for :func:`generate`; ``params.n`` and
            ``params.num_beams`` must be 1.
        prompt_ids: the token ids of the prompt.

    Returns:
        An iterator of :class:`StreamEvent`, one per generated token; the last one has ``finish_reason`` set.

    Raises:
        AigcError: (at the call, before any token) as for :func:`generate`, or ``n``/``num_beams`` above 1.
    """
    for name in ("n", "num_beams"):
        if getattr(params, name) != 1:
            raise AigcError(f"streaming returns one candidate, but {name}={getattr(params, name)}; set {name}=1 "
                            "or call generate", param=name)
    context, eos_token_ids = _prepare(model, tokenizer, [prompt_ids], params, max_length)
    candidate = _Candidate(0, 0, new_token_budget(len(prompt_ids), params, context))
    return _stream_events(model, tokenizer, prompt_ids, candidate, params, eos_token_ids, logits_processors or ())


@torch.inference_mode()
def _stream_events(
    model: nn.Module,
    tokenizer: TextTokenizer,
    prompt_ids: Sequence[int],
    candidate: _Candidate,
    params: SamplingParams,
    eos_token_ids: tuple[int, ...],
    logits_processors: Sequence[LogitsProcessor],
) -> Iterator[StreamEvent]:
    emitted = 0  # characters of the text already sent
    with eval_mode(model):
        for _ in _decode(model, tokenizer, [prompt_ids], [candidate], params, eos_token_ids=eos_token_ids,
                         extra_processors=logits_processors, text_every_step=True):
            text = candidate.text
            if candidate.finish_reason is None:
                settled = text.rstrip(REPLACEMENT_CHARACTER)
                end = len(settled) - partial_stop_length(settled, params.stop)
            else:
                end = len(text)
            delta, emitted = text[emitted:end], max(emitted, end)
            yield StreamEvent(
                token_id=candidate.token_ids[-1],
                text=delta,
                logprob=candidate.logprobs[-1],
                top_logprobs=candidate.top_logprobs[-1] if params.logprobs else None,
                finish_reason=candidate.finish_reason,
            )
