"""What generation returns: a :class:`Completion` per candidate, grouped per prompt, or stream events.

Log-probabilities are always those of the model's *raw* distribution (log-softmax of its logits, before any
penalty, temperature or truncation), so they measure how likely the model finds the text, whatever sampling
settings produced it; vLLM and the OpenAI API report them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length"]


@dataclass
class Completion:
    """One generated candidate.

    Attributes:
        token_ids: every generated token, including the ``<eos>`` or stop token that ended it, and the tokens
            of a stop string.
        text: the decoded completion: special tokens and the ending stop token dropped, cut just before a
            stop string.
        finish_reason: ``"stop"`` (``<eos>``, a stop token or a stop string) or ``"length"`` (``max_tokens``
            or the end of the model's context).
        logprobs: the raw log-probability of each token of ``token_ids``.
        top_logprobs: when ``SamplingParams.logprobs`` is k > 0, the k most likely tokens at each position
            as ``{token_id: logprob}``; otherwise None.
        cumulative_logprob: the sum of ``logprobs``.
    """

    token_ids: list[int]
    text: str
    finish_reason: FinishReason
    logprobs: list[float]
    top_logprobs: list[dict[int, float]] | None
    cumulative_logprob: float


@dataclass
class GenerationOutput:
    """All candidates for one prompt, in candidate order (seed-derived) or, for beam search, best first."""

    prompt_token_ids: list[int]
    completions: list[Completion]


@dataclass
class StreamEvent:
    """One generated token and the text it adds.

    ``text`` is the new text this token makes final; it can be empty while a multi-byte character or a
    possible stop string is still incomplete, and the held-back text arrives with a later event. Joining the
    ``text`` of all events gives the completion's text. The last event carries ``finish_reason``.
    """

    token_id: int
    text: str
    logprob: float
    top_logprobs: dict[int, float] | None = None
    finish_reason: FinishReason | None = None
