"""Batched, KV-cached sampling: :class:`DecodeBatch` decodes many sequences together, and :func:`generate`
(many prompts at once), :func:`stream` (one as it goes) and the serving engine all run on it.

The loop:

1. :meth:`DecodeBatch.add` checks a request and left-pads its prompts; the next step runs them through the
   model once (prefill, in the same pass as the running rows' tokens when the model has ``step_many``),
   copies each prompt's decoding state to its ``n`` candidates, and merges them into the running batch
   (``state.extend``: the caches are right-aligned, the shorter side left-padded);
2. :meth:`DecodeBatch.step`, for all running candidates together: each group applies its own logits
   processors to its rows (requests with equal processors that read only their last tokens in one call) and
   picks the next token (argmax when greedy, else inverse-CDF sampling with the candidate's own random
   numbers); the tokens and their raw log-probabilities come back to the CPU in one copy (the step's only
   device-to-host copy), and the tokens are fed back in one model pass;
3. a candidate finishes on ``<eos>``, a stop token, a stop string or its token budget; finished candidates
   leave the batch (``state.reorder`` drops their rows), so they cost nothing afterwards. Groups can join and
   leave between any two steps (continuous batching, :mod:`~aigc_studio.generation.engine`).

Randomness: candidate j of a request with seed s draws its uniforms from ``numpy.random.default_rng([s, j])``
before decoding starts, and step t uses the t-th one. Its tokens therefore depend only on (s, j), the prompt
and the model, never on the batch it shares. Greedy decoding (temperature 0) uses no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

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
class RunningCandidate:
    """One sequence being generated: what it has produced so far, all on the CPU."""

    prompt_index: int
    candidate_index: int
    budget: int  # most new tokens it may generate
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[int, float]] = field(default_factory=list)
    text: str = ""  # kept current every step only when stop strings or streaming need it
    searched: int = 0  # characters of `text` already searched for stop strings
    emitted: int = 0  # characters of `text` already streamed (see stream_event)
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


def _candidate_uniforms(candidates: Sequence[RunningCandidate], seed: int | None, steps: int) -> torch.Tensor:
    """(B, steps) uniforms; row i comes from candidate i's own generator (see the module docstring)."""
    # Without a seed each candidate gets a fresh one from torch's global generator, so torch.manual_seed
    # still makes an unseeded run repeatable.
    seeds = [seed] * len(candidates) if seed is not None else torch.randint(0, 2**62, (len(candidates),)).tolist()
    rows = [np.random.default_rng([row_seed, candidate.candidate_index]).random(steps)
            for row_seed, candidate in zip(seeds, candidates)]
    return torch.from_numpy(np.stack(rows)).float()


class DecodeGroup:
    """Candidates that joined a :class:`DecodeBatch` together: ``params.n`` per prompt of one request.

    They share the request's :class:`SamplingParams`, hence one list of logits processors, one padded prompt
    width and one step counter; other groups in the batch may have other settings.

    Attributes:
        prompts: the prompts' token ids.
        params: the group's sampling settings.
        candidates: every candidate, prompt-major; finished ones stay here with their tokens and text.
        active: the candidates still decoding, in the order of their batch rows.
    """

    def __init__(self, prompts: Sequence[Sequence[int]], candidates: list[RunningCandidate], params: SamplingParams,
                 *, prompt_ids: torch.Tensor, eos_token_ids: tuple[int, ...], processors: list[LogitsProcessor],
                 uniforms: torch.Tensor | None, text_every_step: bool) -> None:
        self.prompts = [list(prompt) for prompt in prompts]
        self.params = params
        self.candidates = candidates
        self.active = list(candidates)
        self.eos_token_ids = eos_token_ids
        self.processors = processors
        # The last tokens every processor reads, when all of them say (context_width); None: the whole layout.
        widths = [getattr(processor, "context_width", None) for processor in processors]
        self.context_width = None if None in widths else max(widths, default=0)
        self.text_every_step = text_every_step
        self.top_k = params.logprobs or 0
        self.longest_stop = max((len(stop) for stop in params.stop), default=0)
        self.prompt_length = prompt_ids.size(1)
        self.steps = 0  # tokens every active candidate has generated so far
        # Prompt and generated tokens in one preallocated buffer, so processors see a view, never a concatenation.
        max_steps = max(candidate.budget for candidate in candidates)
        self.token_buffer = prompt_ids.new_empty(len(candidates), self.prompt_length + max_steps)
        self.token_buffer[:, :self.prompt_length] = prompt_ids
        self.uniforms = uniforms  # (rows, max_steps), None when greedy

    def outputs(self) -> list[GenerationOutput]:
        """One :class:`GenerationOutput` per prompt, candidates in candidate order (every one must be finished)."""
        n = self.params.n
        with_top = bool(self.params.logprobs)
        return [GenerationOutput(prompt, [c.to_completion(with_top) for c in self.candidates[i * n:(i + 1) * n]])
                for i, prompt in enumerate(self.prompts)]

    def scores(self, raw_logits: torch.Tensor) -> torch.Tensor:
        """The active candidates' raw logits (rows, V) through the group's processors."""
        return apply_logits_processors(self.processors, raw_logits, self.token_buffer[:, :self.prompt_length + self.steps])

    def shares_processors_with(self, other: DecodeGroup) -> bool:
        """Whether this group's rows can go through ``other``'s processors in the same call: equal processors
        that read only their rows' last tokens, of which both groups have enough."""
        width = self.context_width
        return (width is not None and self.processors == other.processors
                and min(self.prompt_length + self.steps, other.prompt_length + other.steps) >= width)

    def last_tokens(self, width: int) -> torch.Tensor:
        """(rows, width): the active candidates' last ``width`` tokens (prompt tokens at the first step)."""
        end = self.prompt_length + self.steps
        return self.token_buffer[:, end - width:end]

    def step_uniforms(self) -> torch.Tensor | None:
        """This step's uniform (rows,) of every active candidate; None when the group decodes greedily."""
        return None if self.uniforms is None else self.uniforms[:, self.steps]

    def record(self, tokens: torch.Tensor) -> None:
        """Write the tokens (rows,) picked for this step into the buffer the processors read."""
        self.token_buffer[:, self.prompt_length + self.steps] = tokens

    def select(self, rows: list[int]) -> None:
        """Keep only the active candidates at these positions (the others left the batch)."""
        index = torch.tensor(rows, dtype=torch.long, device=self.token_buffer.device)
        self.active = [self.active[row] for row in rows]
        self.token_buffer = self.token_buffer.index_select(0, index)
        if self.uniforms is not None:
            self.uniforms = self.uniforms.index_select(0, index)


@dataclass
class _Prefill:
    """A group added to a :class:`DecodeBatch` whose prompts the next step prefills: the prompts left-padded
    (P, T) with their mask, the group's own empty state, and the index that copies each prompt to its
    ``n`` candidates (None when n is 1)."""

    group: DecodeGroup
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    state: Any
    expand: torch.Tensor | None


class DecodeBatch:
    """Sequences of several requests decoded together: one model step per token for all of them.

    Groups (:meth:`add`) join between steps and leave when their last candidate finishes or when removed
    (:meth:`remove`); each group keeps its own sampling settings. A group's prompt is prefilled by the next
    :meth:`step`, in the same pass through the model as the running rows' next tokens when the model has
    ``step_many`` (a GPT), so admitting a request costs about the difference in size rather than a pass of
    its own; its first token is picked the step after. The model must be in eval mode; one thread at a time
    may use a batch.

    Args:
        model: a model with the ``init_state``/``step`` decoding contract (docs/architecture.md, "Models"),
            whose state also has ``extend`` and ``reserve``.
        tokenizer: the model's tokenizer (pad, eos and decoding).
        max_length: a context limit below the model's own (prompt + completion), or None for the model's.
    """

    def __init__(self, model: nn.Module, tokenizer: TextTokenizer, *, max_length: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.context = context_length(model, max_length)
        self.device = model_device(model)
        self.groups: list[DecodeGroup] = []  # their active candidates are the batch rows, in this order
        self.joining: list[_Prefill] = []  # groups added since the last step, prefilled by the next one
        self.state = None  # the model's decoding state for every row; None while the batch is empty
        self.logits: torch.Tensor | None = None  # (rows, V): every row's next-token logits, not yet used

    @property
    def num_rows(self) -> int:
        """Candidates decoding now or joining at the next step; 0 when there is nothing left to do."""
        return sum(len(group.active) for group in self.groups) + sum(len(p.group.active) for p in self.joining)

    @torch.inference_mode()
    def add(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        *,
        logits_processors: Sequence[LogitsProcessor] = (),
        text_every_step: bool = False,
    ) -> DecodeGroup:
        """Add ``params.n`` candidates for each of ``prompts`` to the batch (prefilled by the next :meth:`step`).

        Args:
            prompts: token ids of each prompt, special tokens included.
            params: the group's sampling settings (``num_beams`` must be 1).
            logits_processors: extra processors (e.g. the watermark) for this group only.
            text_every_step: keep every candidate's ``text`` current after each step (streaming).

        Returns:
            The new group; its prompt is prefilled by the next :meth:`step` and its candidates fill in from
            the step after.

        Raises:
            AigcError: invalid params, beam search, or a prompt that is empty, has unknown ids or fills the context.
        """
        if params.num_beams != 1:
            raise AigcError(f"beam search (num_beams={params.num_beams}) runs alone, not in a batch; "
                            "call beam_search or generate", param="num_beams")
        context, eos_token_ids = _prepare(self.model, self.tokenizer, prompts, params, self.max_length)
        budgets = [new_token_budget(len(prompt), params, context) for prompt in prompts]
        candidates = [RunningCandidate(index, j, budgets[index]) for index in range(len(prompts)) for j in range(params.n)]
        input_ids, attention_mask = left_pad(prompts, self.tokenizer.pad_id, self.device)
        max_steps = max(budgets)

        # Each distinct prompt is prefilled once (at the next step); its state and last logits are then copied
        # to its n candidates. The last sampled token is never fed back, hence max_steps - 1 slots after the
        # prompt (capped by the context: a row never needs more, and the cache compacts away padding that rows
        # leave behind).
        capacity = input_ids.size(1) + max_steps - 1
        if context is not None:
            capacity = min(capacity, context)
        state = self.model.init_state(len(prompts), capacity, device=self.device)
        uniforms = None if params.greedy else _candidate_uniforms(candidates, params.seed, max_steps).to(self.device)
        processors = build_logits_processors(params, prompt_length=input_ids.size(1), eos_token_ids=eos_token_ids,
                                             pad_id=self.tokenizer.pad_id, vocab_size=self.model.config.vocab_size,
                                             extra=logits_processors)
        expand = torch.arange(len(prompts), device=self.device).repeat_interleave(params.n) if params.n > 1 else None
        group = DecodeGroup(prompts, candidates, params,
                            prompt_ids=input_ids if expand is None else input_ids.index_select(0, expand),
                            eos_token_ids=eos_token_ids, processors=processors, uniforms=uniforms,
                            text_every_step=text_every_step)
        self.joining.append(_Prefill(group, input_ids, attention_mask, state, expand))
        return group

    @torch.inference_mode()
    def step(self) -> list[tuple[DecodeGroup, list[RunningCandidate]]]:
        """Give every running candidate its next token; finished candidates leave the batch.

        Returns:
            For every group that was running, the candidates that got a token (finished ones have their
            ``finish_reason`` and final ``text`` set).
        """
        if not self.groups:
            self._forward(None)  # only newcomers, if any: their prefill
            return []
        # 1. pick the next token of every active candidate: each group's own processors on its rows, then one
        # argmax or inverse-CDF draw for the whole batch (row by row the same as group by group, at one
        # kernel launch instead of one per group)
        raw_logits = self.logits.float()
        next_tokens = _pick(self._scores(raw_logits), self.groups)
        start = 0
        for group in self.groups:
            group.record(next_tokens[start:start + len(group.active)])
            start += len(group.active)

        # 2. one device-to-host copy per step: token ids (exact in float64), raw logprobs, top alternatives
        raw_logprobs = raw_logits.log_softmax(dim=-1)
        readout = [next_tokens[:, None].double(), raw_logprobs.gather(1, next_tokens[:, None]).double()]
        top_k = max(group.top_k for group in self.groups)
        if top_k:
            top = raw_logprobs.topk(top_k, dim=-1)
            readout += [top.indices.double(), top.values.double()]
        rows = iter(torch.cat(readout, dim=1).tolist())

        # 3. bookkeeping on the CPU: record the token, then decide whether the candidate is done
        updates = []
        for group in self.groups:
            for candidate, row in zip(group.active, rows):
                token_id = int(row[0])
                candidate.token_ids.append(token_id)
                candidate.logprobs.append(row[1])
                if group.top_k:
                    indices, values = row[2:2 + group.top_k], row[2 + top_k:2 + top_k + group.top_k]
                    candidate.top_logprobs.append(dict(zip(map(int, indices), values)))
                _update_finish(candidate, self.tokenizer, group, token_id)
            group.steps += 1
            updates.append((group, list(group.active)))

        # 4. finished candidates leave the batch; feed the others' tokens back (with any newcomers' prompts)
        self.logits = None
        index = self._retain([candidate.finish_reason is None for group in self.groups for candidate in group.active])
        if self.state is not None and index is not None:
            next_tokens = next_tokens.index_select(0, index)
        self._forward(next_tokens[:, None] if self.state is not None else None)
        return updates

    def _forward(self, next_tokens: torch.Tensor | None) -> None:
        """Feed the running rows' ``next_tokens`` (B, 1) (None when no row runs) and prefill the joining groups,
        in one pass when the model can; newcomers' rows then come after everyone else's."""
        calls = []
        if next_tokens is not None:
            self.state.reserve(1)
            calls.append((next_tokens, self.state, None))
        calls += [(joining.input_ids, joining.state, joining.attention_mask) for joining in self.joining]
        if not calls:
            return
        if hasattr(self.model, "step_many"):
            results = self.model.step_many(calls, last_only=True)
        else:
            results = [self.model.step(*call, last_only=True) for call in calls]
        if next_tokens is not None:
            self.logits = results.pop(0)[:, -1]  # (B, V)
        for joining, logits in zip(self.joining, results):
            state, logits = joining.state, logits[:, -1]  # (P, V)
            if joining.expand is not None:
                state.reorder(joining.expand)
                logits = logits.index_select(0, joining.expand)
            if self.state is None:
                self.state, self.logits = state, logits
            else:
                self.state.extend(state)
                self.logits = torch.cat([self.logits, logits])
            self.groups.append(joining.group)
        self.joining = []

    def _scores(self, raw_logits: torch.Tensor) -> torch.Tensor:
        """Every row's logits (B, V) through its group's processors. Consecutive groups with equal processors
        that read only the last few tokens (served requests with the same settings) go through them in one
        call: a step then costs a few calls per distinct setting, not per request."""
        runs: list[list[DecodeGroup]] = []
        for group in self.groups:
            if runs and group.shares_processors_with(runs[-1][-1]):
                runs[-1].append(group)
            else:
                runs.append([group])
        scores, start = [], 0
        for run in runs:
            size = sum(len(group.active) for group in run)
            logits = raw_logits[start:start + size]
            if len(run) == 1:
                scores.append(run[0].scores(logits))
            elif not run[0].processors:
                scores.append(logits)
            else:
                width = run[0].context_width
                token_ids = torch.cat([group.last_tokens(width) for group in run])
                scores.append(apply_logits_processors(run[0].processors, logits, token_ids))
            start += size
        return scores[0] if len(scores) == 1 else torch.cat(scores)

    def remove(self, group: DecodeGroup) -> None:
        """Drop ``group``'s rows now (a cancelled request); its candidates keep what they generated."""
        if any(joining.group is group for joining in self.joining):
            self.joining = [joining for joining in self.joining if joining.group is not group]
        else:
            self._retain([other is not group for other in self.groups for _ in other.active])
        group.active = []

    def _retain(self, keep: list[bool]) -> torch.Tensor | None:
        """Keep the rows marked True in the state, the pending logits and the groups.

        The kept rows stay in order, except that one-row groups may move into the gaps of departed groups;
        ``groups`` follows the new row order.

        Returns:
            The index of the kept rows in their new order, or None when every row stays.
        """
        if all(keep):
            return None
        owners = [group for group in self.groups for _ in group.active]  # the group of every row
        start = 0
        for group in self.groups:
            size = len(group.active)
            mine = [row for row in range(size) if keep[start + row]]
            if len(mine) < size:
                group.select(mine)
            start += size
        rows = [row for row, kept in enumerate(keep) if kept]
        if not rows:
            self.groups = []
            self.state = self.logits = None  # nothing runs: free the cache
            return None
        gaps = [row for row in range(len(rows)) if not keep[row]]
        movers = [row for row in rows if row >= len(rows)]
        if gaps and all(not owners[row].active for row in gaps) and all(len(owners[row].active) == 1 for row in movers):
            # Whole groups left, and the rows past the new end are one-row groups (a request each, as served):
            # they move into the gaps, so one row of the cache moves per departure instead of every row after it.
            rows = list(range(len(rows)))
            for gap, mover in zip(gaps, movers):
                rows[gap] = mover
        self.groups = list(dict.fromkeys(owners[row] for row in rows))  # the order of their rows now
        index = torch.tensor(rows, device=self.device)
        self.state.reorder(index)
        if self.logits is not None:
            self.logits = self.logits.index_select(0, index)
        return index


def _pick(scores: torch.Tensor, groups: Sequence[DecodeGroup]) -> torch.Tensor:
    """The next token (B,) of every row from its processed scores (B, V): argmax in greedy groups, the row's
    own uniform through :func:`sample_with_uniforms` in the others."""
    uniforms = [group.step_uniforms() for group in groups]
    if all(u is None for u in uniforms):
        return scores.argmax(dim=-1)
    if all(u is not None for u in uniforms):
        return sample_with_uniforms(scores, uniforms[0] if len(uniforms) == 1 else torch.cat(uniforms))
    # Mixed: greedy rows draw at 0 too (cheaper than splitting the batch), then keep their argmax.
    greedy = torch.cat([torch.full((len(group.active),), u is None, dtype=torch.bool, device=scores.device)
                        for group, u in zip(groups, uniforms)])
    row_uniforms = torch.cat([scores.new_zeros(len(group.active)) if u is None else u.to(scores.dtype)
                              for group, u in zip(groups, uniforms)])
    return torch.where(greedy, scores.argmax(dim=-1), sample_with_uniforms(scores, row_uniforms))


def _update_finish(candidate: RunningCandidate, tokenizer: TextTokenizer, group: DecodeGroup, token_id: int) -> None:
    """Set ``candidate.finish_reason`` (and its final text) when its newest token ``token_id`` ends it."""
    params, token_ids = group.params, candidate.token_ids
    if token_id in group.eos_token_ids:
        candidate.finish_reason = "stop"
        candidate.text = tokenizer.decode(token_ids[:-1])  # the stop token is not part of the text
        return
    if params.stop or group.text_every_step:
        candidate.text = tokenizer.decode(token_ids)
    if params.stop:
        # Only text that became final since the last search can complete a stop string; stop strings ending
        # within the first min_tokens tokens do not count (vLLM's rule).
        if len(token_ids) >= params.min_tokens:
            start = max(0, candidate.searched - (group.longest_stop - 1))
            position = find_stop_string(candidate.text, params.stop, start)
            if position >= 0:
                candidate.finish_reason = "stop"
                candidate.text = candidate.text[:position]
                return
        candidate.searched = len(candidate.text.rstrip(REPLACEMENT_CHARACTER))
    if len(token_ids) >= candidate.budget:
        candidate.finish_reason = "length"
        if not (params.stop or group.text_every_step):
            candidate.text = tokenizer.decode(token_ids)


def stream_event(candidate: RunningCandidate, params: SamplingParams) -> StreamEvent:
    """The event for ``candidate``'s newest token: the text it makes final since the last event.

    Text is held back while it may still change: an incomplete UTF-8 character (byte-level BPE can split a
    Chinese character over two tokens; it decodes to U+FFFD until complete) or the beginning of a stop string.
    The candidate's group must keep text current (``text_every_step``); joining the events' text gives the
    final text.
    """
    text = candidate.text
    if candidate.finish_reason is None:
        settled = text.rstrip(REPLACEMENT_CHARACTER)
        end = len(settled) - partial_stop_length(settled, params.stop)
    else:
        end = len(text)
    delta, candidate.emitted = text[candidate.emitted:end], max(candidate.emitted, end)
    return StreamEvent(
        token_id=candidate.token_ids[-1],
        text=delta,
        logprob=candidate.logprobs[-1],
        top_logprobs=candidate.top_logprobs[-1] if params.logprobs else None,
        finish_reason=candidate.finish_reason,
    )


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
    _prepare(model, tokenizer, prompts, params, max_length)
    if params.num_beams > 1:
        return [GenerationOutput(list(prompt), beam_search(model, tokenizer, prompt, params, max_length=max_length))
                for prompt in prompts]
    with eval_mode(model):
        batch = DecodeBatch(model, tokenizer, max_length=max_length)
        group = batch.add(prompts, params, logits_processors=logits_processors or ())
        while batch.num_rows:
            batch.step()
    return group.outputs()


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

    Text is held back while it may still change (see :func:`stream_event`). Joining the events' text gives
    exactly the text :func:`generate` returns for the same seed.

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
    _prepare(model, tokenizer, [prompt_ids], params, max_length)
    return _stream_events(model, tokenizer, prompt_ids, params, logits_processors or (), max_length)


@torch.inference_mode()
def _stream_events(
    model: nn.Module,
    tokenizer: TextTokenizer,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    logits_processors: Sequence[LogitsProcessor],
    max_length: int | None,
) -> Iterator[StreamEvent]:
    with eval_mode(model):
        batch = DecodeBatch(model, tokenizer, max_length=max_length)
        batch.add([prompt_ids], params, logits_processors=logits_processors, text_every_step=True)
        while batch.num_rows:
            for _, candidates in batch.step():
                for candidate in candidates:
                    yield stream_event(candidate, params)
