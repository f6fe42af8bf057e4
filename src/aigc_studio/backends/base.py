"""What every backend offers, so callers never care which model family or server is behind it.

A backend turns prompts into candidates. The builtin backend runs this project's own models; later ones
wrap a local Hugging Face model directory or any OpenAI-compatible server. The CLI, the content pipeline
and the HTTP server call only this protocol.

A *prompt* is what the model is conditioned on: for a conditional (records) model it is the compact
``source`` string (``name[The Eagle], eatType[pub]``), for a plain language model it is the text to continue.
:attr:`BackendInfo.prompt_format` says which one a backend expects.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from aigc_studio.generation.sampling_params import SamplingParams

PromptFormat = Literal["records", "text"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class BackendInfo:
    """What a caller may need to know about the model behind a backend."""

    name: str
    backend: str  # "builtin", "transformers", "openai"
    prompt_format: PromptFormat
    context_length: int
    model_type: str = ""
    weights_sha256: str = ""
    languages: tuple[str, ...] = ()  # what the model can write ("en", "zh"); empty when unknown (any)


@dataclass
class TokenLogprob:
    """One generated token with its log-probability and, when asked, the most likely alternatives."""

    token: str
    logprob: float
    top_logprobs: dict[str, float] = field(default_factory=dict)


def openai_logprobs(text: str, logprobs: Sequence[TokenLogprob]) -> dict[str, Any]:
    """The OpenAI (legacy completions) ``logprobs`` object of one candidate.

    Returns:
        ``{"tokens", "token_logprobs", "top_logprobs", "text_offset"}``: each token's text, its log-probability,
        its most likely alternatives (``{token: logprob}``, empty when none were asked for) and where its text
        starts in ``text``. A token whose text is not in ``text`` (``<eos>``, one piece of a multi-byte
        character, a placeholder the backend replaced) gets the offset where the next text starts.
    """
    offsets, position = [], 0
    for item in logprobs:
        # A token's text is searched from where the previous one ended: placeholders the backend replaced by
        # longer values are skipped over this way, and a token not in the text leaves the position as it is.
        found = text.find(item.token, position) if item.token else -1
        if found < 0:
            offsets.append(position)
        else:
            offsets.append(found)
            position = found + len(item.token)
    return {
        "tokens": [item.token for item in logprobs],
        "token_logprobs": [item.logprob for item in logprobs],
        "top_logprobs": [dict(item.top_logprobs) for item in logprobs],
        "text_offset": offsets,
    }


@dataclass
class Candidate:
    """One generated continuation of a prompt."""

    text: str
    finish_reason: FinishReason
    num_tokens: int
    logprobs: list[TokenLogprob] | None = None
    cumulative_logprob: float | None = None


@dataclass
class GenerationResult:
    """All candidates for one prompt, plus token counts for usage reporting."""

    prompt: str
    candidates: list[Candidate]
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return sum(candidate.num_tokens for candidate in self.candidates)


@dataclass
class StreamChunk:
    """A piece of text as it is generated; the last chunk of a stream carries the finish reason."""

    text: str
    logprob: TokenLogprob | None = None
    finish_reason: FinishReason | None = None


@runtime_checkable
class Backend(Protocol):
    """The contract every backend keeps."""

    info: BackendInfo

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[GenerationResult]:
        """Generate ``params.n`` candidates (or ``num_beams`` beams) for every prompt, batched where possible.

        Raises:
            AigcError: invalid parameters or a prompt longer than the model's context.
        """
        ...

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[StreamChunk]:
        """Yield the text of one candidate (``n`` must be 1) as it is generated."""
        ...

    def score(self, prompt: str, continuation: str) -> list[TokenLogprob]:
        """Log-probability of each token of ``continuation`` given ``prompt`` (for fluency and explanations)."""
        ...
