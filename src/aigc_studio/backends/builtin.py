"""The builtin backend: this project's own models (GPT, LSTM) loaded from a model directory.

It renders a prompt into the token layout the model was trained on (``<bos> source <sep>`` for a
conditional model, ``<bos> text`` for a plain language model; see docs/architecture.md), runs the batched
KV-cached sampler or beam search, and returns the backend protocol's dataclasses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from aigc_studio.backends.base import BackendInfo, Candidate, GenerationResult, StreamChunk, TokenLogprob
from aigc_studio.content.delexicalize import delexicalize, relexicalize
from aigc_studio.data.tokenizer import tokenizer_languages
from aigc_studio.errors import AigcError
from aigc_studio.generation.beam_search import beam_search
from aigc_studio.generation.decoding import check_prompts, context_length
from aigc_studio.generation.outputs import Completion, StreamEvent
from aigc_studio.generation.sampler import generate, stream
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.model_dir import LoadedModel, load_pretrained, weights_sha256
from aigc_studio.models.quantization import quantize_model


class BuiltinBackend:
    """A :class:`~aigc_studio.backends.base.Backend` over a model directory written by ``aigc train``."""

    def __init__(self, loaded: LoadedModel, name: str | None = None, quantization: str = "none") -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.quantization = quantization  # what from_directory applied; an engine process loads the same
        self.tokenizer = loaded.tokenizer
        self.generation_config = loaded.generation_config
        directory = Path(loaded.directory)
        self.info = BackendInfo(
            name=name or directory.name,
            backend="builtin",
            prompt_format=self.generation_config.prompt_format,
            context_length=self.generation_config.max_length,
            model_type=self.model.model_type,
            weights_sha256=weights_sha256(directory),
            languages=tokenizer_languages(self.tokenizer),
        )

    @classmethod
    def from_directory(cls, directory: str | Path, *, name: str | None = None, device: str = "cpu",
                       quantize: str = "none") -> BuiltinBackend:
        """Load a model directory; ``quantize="int8"`` decodes with int8 weights on the CPU
        (:mod:`~aigc_studio.models.quantization`).

        Raises:
            AigcError: see :func:`~aigc_studio.models.model_dir.load_pretrained`, and
                :func:`~aigc_studio.models.quantization.quantize_model` for ``quantize``.
        """
        loaded = load_pretrained(directory, device=device)
        quantize_model(loaded.model, quantize)
        return cls(loaded, name=name, quantization=quantize)

    def default_params(self) -> SamplingParams:
        """The sampling defaults stored in the model's ``generation_config.json``."""
        config = self.generation_config
        return SamplingParams(
            temperature=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            repetition_penalty=config.repetition_penalty,
            num_beams=config.num_beams,
        )

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids the model is conditioned on: ``<bos> source <sep>`` or ``<bos> text``."""
        prompt, _, _ = delexicalize(prompt, None, self.generation_config.delexicalized_slots)
        ids = [self.tokenizer.bos_id, *self.tokenizer.encode(prompt)]
        if self.info.prompt_format == "records":
            ids.append(self.tokenizer.sep_id)
        return ids

    def open_request(self, prompt: str, params: SamplingParams) -> BuiltinRequest:
        """Check ``params`` and ``prompt`` and encode the prompt: what decoding needs, and what turns its tokens
        back into the texts the caller sees (:meth:`generate`, :meth:`stream` and the serving engine use it).

        Raises:
            AigcError: invalid params, or a prompt that fills the model's context.
        """
        params.validate()
        if not isinstance(prompt, str):
            raise AigcError(f"prompt must be a string, got {type(prompt).__name__}", param="prompt")
        prompt_ids = self.encode_prompt(prompt)
        check_prompts([prompt_ids], self.model.config.vocab_size, context_length(self.model))
        return BuiltinRequest(self, prompt, prompt_ids, params, self._slot_values(prompt))

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[GenerationResult]:
        requests = [self.open_request(prompt, params) for prompt in prompts]
        if params.num_beams > 1:
            completions = [beam_search(self.model, self.tokenizer, request.prompt_ids, params) for request in requests]
        else:
            outputs = generate(self.model, self.tokenizer, [request.prompt_ids for request in requests], params)
            completions = [output.completions for output in outputs]
        return [request.result(prompt_completions) for request, prompt_completions in zip(requests, completions)]

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[StreamChunk]:
        if params.n != 1 or params.num_beams != 1:
            raise AigcError("streaming returns one candidate: set n=1 and num_beams=1", param="n")
        request = self.open_request(prompt, params)
        return (request.chunk(0, event) for event in stream(self.model, self.tokenizer, request.prompt_ids, params))

    @torch.inference_mode()
    def score(self, prompt: str, continuation: str) -> list[TokenLogprob]:
        prompt_ids = self.encode_prompt(prompt)
        # The model saw placeholders where the prompt's verbatim values go; score the text the same way.
        _, continuation, _ = delexicalize(prompt, continuation, self.generation_config.delexicalized_slots)
        continuation_ids = self.tokenizer.encode(continuation)
        if self.info.prompt_format == "records":
            continuation_ids.append(self.tokenizer.eos_id)  # a complete target ends with <eos>
        ids = prompt_ids + continuation_ids
        if len(ids) > self.info.context_length:
            raise AigcError(
                f"prompt and continuation are {len(ids)} tokens; the model's context is {self.info.context_length}; "
                "shorten the text"
            )
        device = next(self.model.parameters()).device
        logits, _ = self.model(torch.tensor([ids], device=device))
        logprobs = F.log_softmax(logits[0, len(prompt_ids) - 1 : -1].float(), dim=-1)  # (len(continuation), V)
        chosen = logprobs.gather(1, torch.tensor(continuation_ids, device=device)[:, None])[:, 0].tolist()
        return [self._token_logprob(token_id, value, None) for token_id, value in zip(continuation_ids, chosen)]

    def _slot_values(self, prompt: str) -> dict[str, str]:
        return delexicalize(prompt, None, self.generation_config.delexicalized_slots)[2]

    def _token_logprob(self, token_id: int, value: float, alternatives: dict[int, float] | None) -> TokenLogprob:
        strings = self.tokenizer.token_strings
        top = {}
        if alternatives:
            top = dict(zip(strings(list(alternatives)), alternatives.values()))
        return TokenLogprob(token=strings([token_id])[0], logprob=value if math.isfinite(value) else -1e9, top_logprobs=top)


def _partial_placeholder_length(text: str, slot_values: dict[str, str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a placeholder (0 if none)."""
    longest = 0
    for token in slot_values:
        for length in range(min(len(token) - 1, len(text)), longest, -1):
            if text.endswith(token[:length]):
                longest = length
                break
    return longest


class BuiltinRequest:
    """One prompt of a :class:`BuiltinBackend`, checked and encoded; it turns the decoder's output into the
    backend's texts: placeholders put back (:func:`relexicalize`), also while streaming.

    Built by :meth:`BuiltinBackend.open_request`. A stream's text is held back while it ends with the start of
    a placeholder (``__na`` may become ``__name__``), so a chunk never shows half a placeholder.
    """

    def __init__(self, backend: BuiltinBackend, prompt: str, prompt_ids: list[int], params: SamplingParams,
                 slot_values: dict[str, str]) -> None:
        self.backend = backend
        self.prompt = prompt
        self.prompt_ids = prompt_ids
        self.params = params
        self.slot_values = slot_values
        self._pending: dict[int, str] = {}  # per candidate: streamed text not yet sent (a possible placeholder start)

    def chunk(self, candidate_index: int, event: StreamEvent) -> StreamChunk:
        """The stream chunk for one decoder event of candidate ``candidate_index``."""
        logprob = None
        if self.params.logprobs is not None:
            logprob = self.backend._token_logprob(event.token_id, event.logprob, event.top_logprobs)
        pending = relexicalize(self._pending.pop(candidate_index, "") + event.text, self.slot_values)
        keep = 0 if event.finish_reason else _partial_placeholder_length(pending, self.slot_values)
        if keep:
            self._pending[candidate_index] = pending[len(pending) - keep:]
        return StreamChunk(text=pending[:len(pending) - keep], logprob=logprob, finish_reason=event.finish_reason)

    def result(self, completions: Sequence[Completion]) -> GenerationResult:
        """The backend's result for this prompt from the decoder's finished completions."""
        return GenerationResult(prompt=self.prompt, candidates=[self._candidate(completion) for completion in completions],
                                prompt_tokens=len(self.prompt_ids))

    def _candidate(self, completion: Completion) -> Candidate:
        logprobs = None
        if self.params.logprobs is not None:
            top = completion.top_logprobs or [None] * len(completion.token_ids)
            logprobs = [
                self.backend._token_logprob(token_id, value, alternatives)
                for token_id, value, alternatives in zip(completion.token_ids, completion.logprobs, top)
            ]
        return Candidate(
            text=relexicalize(completion.text, self.slot_values),
            finish_reason=completion.finish_reason,
            num_tokens=len(completion.token_ids),
            logprobs=logprobs,
            cumulative_logprob=completion.cumulative_logprob,
        )
