"""Beam search: keep the ``num_beams`` most likely partial texts, return the best finished ones.

The algorithm is Hugging Face's ``BeamSearchScorer`` (itself after Wu et al. 2016, "Google's Neural Machine
Translation System", section 7, for the length normalisation):

1. run the prompt once and copy its decoding state to every beam; only beam 0 counts at first, so the first
   step does not pick the same token num_beams times;
2. every step, score each (beam, next token) pair as the beam's sum of log-probabilities plus the token's
   (after the penalty processors), and walk the ``2 * num_beams`` best pairs in order:
   a pair ending in ``<eos>``, a stop token or a stop string becomes a finished hypothesis (only if it ranks
   among the first num_beams, as in HF), any other pair continues as a beam until num_beams are chosen;
3. a finished hypothesis is ranked by ``sum(logprobs) / length ** length_penalty`` (length = new tokens,
   the ending token included); the search ends when num_beams hypotheses are finished and no running beam
   can still beat the worst of them, or when the token budget is used up (running beams then finish with
   ``"length"``);
4. otherwise ``state.reorder`` moves each chosen beam's cache into its new row and the chosen tokens are fed.

Beam search is deterministic: temperature, top-k, top-p, min-p and the seed play no part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from aigc_studio.data.tokenizer import TextTokenizer
from aigc_studio.generation.decoding import (
    REPLACEMENT_CHARACTER,
    check_prompts,
    context_length,
    eval_mode,
    find_stop_string,
    model_device,
    new_token_budget,
    stop_token_ids,
)
from aigc_studio.generation.logits_processors import LogitsProcessor, apply_logits_processors, build_logits_processors
from aigc_studio.generation.outputs import Completion, FinishReason
from aigc_studio.generation.sampling_params import SamplingParams


@dataclass
class _Beam:
    """A running hypothesis: its new tokens, their raw logprobs and (with stop strings) the text searched."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[int, float]] = field(default_factory=list)
    searched: int = 0

    def extended(self, token_id: int, logprob: float, top: dict[int, float] | None) -> _Beam:
        return _Beam(self.token_ids + [token_id], self.logprobs + [logprob],
                     self.top_logprobs + ([top] if top is not None else []), self.searched)


@dataclass
class _Hypothesis:
    score: float
    completion: Completion


def _length_normalised(score: float, length: int, length_penalty: float) -> float:
    return score / (length ** length_penalty)


def _finish(beam: _Beam, score: float, text: str, reason: FinishReason, params: SamplingParams) -> _Hypothesis:
    completion = Completion(
        token_ids=beam.token_ids,
        text=text,
        finish_reason=reason,
        logprobs=beam.logprobs,
        top_logprobs=beam.top_logprobs if params.logprobs else None,
        cumulative_logprob=math.fsum(beam.logprobs),
    )
    return _Hypothesis(_length_normalised(score, len(beam.token_ids), params.length_penalty), completion)


def _keep_best(finished: list[_Hypothesis], hypothesis: _Hypothesis, num_beams: int) -> None:
    """Add ``hypothesis`` and keep only the ``num_beams`` best (HF's ``BeamHypotheses.add``)."""
    finished.append(hypothesis)
    finished.sort(key=lambda h: h.score, reverse=True)
    del finished[num_beams:]


@torch.inference_mode()
def beam_search(
    model: nn.Module,
    tokenizer: TextTokenizer,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    *,
    logits_processors: Sequence[LogitsProcessor] | None = None,
    max_length: int | None = None,
) -> list[Completion]:
    """Beam search with ``params.num_beams`` beams for one prompt.

    Args:
        model: a model with the ``init_state``/``step`` decoding contract (its state must have ``reorder``).
        tokenizer: the model's tokenizer.
        prompt_ids: the prompt's token ids.
        params: ``num_beams``, ``length_penalty``, ``n`` (how many to return), ``max_tokens``, ``min_tokens``,
            stops and penalties are used; sampling settings are ignored.
        logits_processors: extra processors run after the penalties.
        max_length: a context limit below the model's own, or None.

    Returns:
        The ``params.n`` best finished hypotheses, best first.

    Raises:
        AigcError: invalid params, or a prompt that is empty, has unknown ids or fills the context.
    """
    params.validate()
    vocab_size = model.config.vocab_size
    context = context_length(model, max_length)
    check_prompts([prompt_ids], vocab_size, context)
    eos_token_ids = stop_token_ids(tokenizer.eos_id, params, vocab_size)
    budget = new_token_budget(len(prompt_ids), params, context)
    num_beams, prompt_length, device = params.num_beams, len(prompt_ids), model_device(model)
    processors = build_logits_processors(params, prompt_length=prompt_length, eos_token_ids=eos_token_ids,
                                         vocab_size=vocab_size, extra=logits_processors or (), warpers=False)
    longest_stop = max((len(stop) for stop in params.stop), default=0)
    top_k = params.logprobs or 0

    with eval_mode(model):
        # 1. one prefill, copied to every beam; beams 1.. start at -inf so step 0 only extends beam 0
        state = model.init_state(1, prompt_length + budget - 1, device=device)
        logits = model.step(torch.tensor([list(prompt_ids)], device=device), state, last_only=True)[:, -1]  # (1, V)
        state.reorder(torch.zeros(num_beams, dtype=torch.long, device=device))
        logits = logits.expand(num_beams, -1)
        # Prompt and new tokens of every beam, preallocated; processors see a view of the filled part.
        token_buffer = torch.empty(num_beams, prompt_length + budget, dtype=torch.long, device=device)
        token_buffer[:, :prompt_length] = torch.tensor(list(prompt_ids), device=device)
        beam_scores = torch.full((num_beams,), float("-inf"), device=device)
        beam_scores[0] = 0.0
        beams = [_Beam() for _ in range(num_beams)]
        finished: list[_Hypothesis] = []

        for step in range(budget):
            # 2. score every (beam, token) pair and take the 2 * num_beams best
            raw_logits = logits.float()
            raw_logprobs = raw_logits.log_softmax(dim=-1)  # (nb, V)
            scores = apply_logits_processors(processors, raw_logits, token_buffer[:, :prompt_length + step])
            scores = scores.log_softmax(dim=-1)
            pair_scores = (beam_scores[:, None] + scores).view(-1)  # (nb * V,)
            best_scores, best_pairs = pair_scores.topk(min(2 * num_beams, pair_scores.numel()))
            pair_logprobs = raw_logprobs.view(-1)[best_pairs]
            top = raw_logprobs.topk(top_k, dim=-1) if top_k else None
            best_scores_list, pair_logprobs_list = best_scores.tolist(), pair_logprobs.tolist()
            best_pairs_list = best_pairs.tolist()
            top_rows = list(zip(top.indices.tolist(), top.values.tolist())) if top is not None else None

            chosen: list[tuple[int, int, float, _Beam]] = []  # (source beam, token, score, extended beam)
            for rank, (score, pair, logprob) in enumerate(zip(best_scores_list, best_pairs_list, pair_logprobs_list)):
                if score == float("-inf"):
                    break
                beam_index, token_id = divmod(pair, vocab_size)
                top_dict = dict(zip(*top_rows[beam_index])) if top_rows is not None else None
                beam = beams[beam_index].extended(token_id, logprob, top_dict)
                reason, text = _stop_reason(beam, tokenizer, params, eos_token_ids, longest_stop)
                if reason is not None:
                    if rank < num_beams:
                        _keep_best(finished, _finish(beam, score, text, "stop", params), num_beams)
                    continue
                chosen.append((beam_index, token_id, score, beam))
                if len(chosen) == num_beams:
                    break

            # 3. stop when nothing runs, the budget is spent, or no running beam can beat the finished ones
            if not chosen:
                break
            if step + 1 == budget:
                for _, _, score, beam in chosen:
                    _keep_best(finished, _finish(beam, score, tokenizer.decode(beam.token_ids), "length", params), num_beams)
                break
            best_running = _length_normalised(chosen[0][2], step + 1, params.length_penalty)
            if len(finished) >= num_beams and finished[-1].score >= best_running:
                break

            # 4. move each chosen beam's state into its row and feed its token
            source = torch.tensor([beam_index for beam_index, _, _, _ in chosen], device=device)
            next_tokens = torch.tensor([token_id for _, token_id, _, _ in chosen], device=device)
            state.reorder(source)
            token_buffer = token_buffer.index_select(0, source)
            token_buffer[:, prompt_length + step] = next_tokens
            beam_scores = torch.tensor([score for _, _, score, _ in chosen], device=device)
            beams = [beam for _, _, _, beam in chosen]
            logits = model.step(next_tokens[:, None], state)[:, -1]

    return [hypothesis.completion for hypothesis in finished[:params.n]]


def _stop_reason(
    beam: _Beam,
    tokenizer: TextTokenizer,
    params: SamplingParams,
    eos_token_ids: tuple[int, ...],
    longest_stop: int,
) -> tuple[FinishReason | None, str]:
    """Whether ``beam``'s newest token ends it, and its text if so (updates ``beam.searched``)."""
    if beam.token_ids[-1] in eos_token_ids:
        return "stop", tokenizer.decode(beam.token_ids[:-1])
    if not params.stop:
        return None, ""
    text = tokenizer.decode(beam.token_ids)
    if len(beam.token_ids) >= params.min_tokens:
        position = find_stop_string(text, params.stop, max(0, beam.searched - (longest_stop - 1)))
        if position >= 0:
            return "stop", text[:position]
    beam.searched = len(text.rstrip(REPLACEMENT_CHARACTER))
    return None, ""
