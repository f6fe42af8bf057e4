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
from aigc_studio.errors import AigcError
from aigc_studio.generation.beam_search import beam_search
from aigc_studio.generation.outputs import Completion
from aigc_studio.generation.sampler import generate, stream
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.model_dir import LoadedModel, load_pretrained, weights_sha256


class BuiltinBackend:
    """A :class:`~aigc_studio.backends.base.Backend` over a model directory written by ``aigc train``."""

    def __init__(self, loaded: LoadedModel, name: str | None = None) -> None:
        self.loaded = loaded
        self.model = loaded.model
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
        )

    @classmethod
    def from_directory(cls, directory: str | Path, *, name: str | None = None, device: str = "cpu") -> BuiltinBackend:
        """Load a model directory (see :func:`~aigc_studio.models.model_dir.load_pretrained` for its errors)."""
        return cls(load_pretrained(directory, device=device), name=name)

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

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[GenerationResult]:
        params.validate()
        prompt_ids = [self.encode_prompt(prompt) for prompt in prompts]
        if params.num_beams > 1:
            completions = [beam_search(self.model, self.tokenizer, ids, params) for ids in prompt_ids]
        else:
            outputs = generate(self.model, self.tokenizer, prompt_ids, params)
            completions = [output.completions for output in outputs]
        return [
            GenerationResult(
                prompt=prompt,
                candidates=[self._candidate(completion, params, self._slot_values(prompt)) for completion in prompt_completions],
                prompt_tokens=len(ids),
            )
            for prompt, ids, prompt_completions in zip(prompts, prompt_ids, completions)
        ]

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[StreamChunk]:
        if params.n != 1 or params.num_beams != 1:
            raise AigcError("streaming returns one candidate: set n=1 and num_beams=1", param="n")
        slot_values = self._slot_values(prompt)
        pending = ""  # text that may still be the start of a placeholder, held back until it is decided
        for event in stream(self.model, self.tokenizer, self.encode_prompt(prompt), params):
            logprob = None
            if params.logprobs is not None:
                logprob = self._token_logprob(event.token_id, event.logprob, event.top_logprobs)
            pending = relexicalize(pending + event.text, slot_values)
            keep = 0 if event.finish_reason else _partial_placeholder_length(pending, slot_values)
            text, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
            yield StreamChunk(text=text, logprob=logprob, finish_reason=event.finish_reason)

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

    def _candidate(self, completion: Completion, params: SamplingParams, slot_values: dict[str, str]) -> Candidate:
        logprobs = None
        if params.logprobs is not None:
            top = completion.top_logprobs or [None] * len(completion.token_ids)
            logprobs = [
                self._token_logprob(token_id, value, alternatives)
                for token_id, value, alternatives in zip(completion.token_ids, completion.logprobs, top)
            ]
        return Candidate(
            text=relexicalize(completion.text, slot_values),
            finish_reason=completion.finish_reason,
            num_tokens=len(completion.token_ids),
            logprobs=logprobs,
            cumulative_logprob=completion.cumulative_logprob,
        )

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
