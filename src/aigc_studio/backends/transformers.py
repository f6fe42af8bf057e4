"""The transformers backend: any causal language model directory that Hugging Face ``transformers`` loads.

::

    backend = TransformersBackend.from_directory("models/Qwen2.5-0.5B-Instruct", device="cuda")
    backend.generate(["Write a tagline for a riverside pub."], SamplingParams(n=3, seed=7, max_tokens=40))

The model runs under *this project's* decoder (:mod:`aigc_studio.generation.sampler` and beam search), not
``model.generate()``: :class:`HFDecoder` gives a ``transformers`` model the ``init_state``/``step`` contract of our
own models (docs/architecture.md, "Models"). Every :class:`SamplingParams` field therefore means exactly what it
means for a builtin model: the same logits processors (penalties, min-p, the watermark), the same per-candidate
seeds (candidate j of seed s draws the same numbers whatever shares its batch), stop strings, streaming that
holds back half characters and half stop strings, and raw-distribution logprobs.

Prompts: a ``"text"`` model gets the tokenizer's chat template when it has one (the prompt as one user turn,
then the assistant's turn opened), else the prompt with the tokenizer's own special tokens; a ``"records"``
model (a conditional model exported from this project, see :mod:`aigc_studio.models.export`) gets
``<bos> source <sep>``.

Weights load with ``use_safetensors=True`` and without ``trust_remote_code``: a pickled ``.bin`` checkpoint or a
model that needs code from its directory is refused, since loading either runs code from the files.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aigc_studio.backends.base import BackendInfo, Candidate, GenerationResult, PromptFormat, StreamChunk, TokenLogprob
from aigc_studio.content.delexicalize import delexicalize, relexicalize
from aigc_studio.errors import AigcError
from aigc_studio.fileio import sha256_file
from aigc_studio.generation.decoding import check_prompts
from aigc_studio.generation.outputs import Completion
from aigc_studio.generation.sampler import generate, stream
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.quantization import check_quantization, quantize_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
INSTALL_HINT = "install the hf extra: pip install 'aigc-studio[hf]'"


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise AigcError(f"the transformers backend needs the `transformers` package; {INSTALL_HINT}") from None
    return transformers


# -- the model and tokenizer under our decoding contract -------------------------------------------------------


@dataclass(frozen=True)
class DecoderConfig:
    """What the decoders read from ``model.config``: the logits width and the context (``block_size``)."""

    vocab_size: int
    block_size: int


class HFState:
    """The decoding state of :class:`HFDecoder`: transformers' own cache plus what left padding needs.

    Attributes:
        cache: the model's key/value cache (None before the first step).
        mask: (B, L) 1 for real tokens, 0 for left padding, over everything the cache holds.
        positions: (B,) real tokens each row has seen, i.e. the position of its next token.
    """

    def __init__(self, batch_size: int, device: torch.device | str | None) -> None:
        self.cache: Any = None
        self.mask = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
        self.positions = torch.zeros(batch_size, dtype=torch.long, device=device)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep, repeat or reorder rows: row i becomes old row ``index[i]`` (beam search, finished rows leaving)."""
        if self.cache is not None:
            self.cache.reorder_cache(index)
        self.mask = self.mask.index_select(0, index)
        self.positions = self.positions.index_select(0, index)

    def reserve(self, new_tokens: int) -> None:
        """Nothing to do: transformers' dynamic cache grows as tokens arrive (our KVCache preallocates)."""


class HFDecoder(nn.Module):
    """A ``transformers`` causal language model behind the ``init_state``/``step`` contract of our models.

    ``step`` passes transformers the attention mask over everything cached and position ids that count real
    tokens only, transformers' own rule for left padding, so a padded row gives the logits of the same row
    alone. Requests run through :func:`~aigc_studio.generation.sampler.generate`, :func:`stream` and beam search;
    rows of different requests are not merged (the serving engine runs this backend one request at a time).
    """

    model_type = "hf"

    def __init__(self, model: nn.Module, context_length: int) -> None:
        super().__init__()
        self.hf = model
        vocab_size = model.get_output_embeddings().out_features  # the logits width, padded vocabularies included
        self.config = DecoderConfig(vocab_size=vocab_size, block_size=context_length)
        # transformers 5 renamed `past_key_values` to `cache` (argument and output); older releases use the old name.
        self._cache_name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def init_state(self, batch_size: int, max_length: int, device: torch.device | str | None = None) -> HFState:
        """An empty state; ``max_length`` is not needed because transformers' cache grows on demand."""
        return HFState(batch_size, device if device is not None else next(self.parameters()).device)

    def step(self, input_ids: torch.Tensor, state: HFState, attention_mask: torch.Tensor | None = None, *,
             last_only: bool = True) -> torch.Tensor:
        """Feed (B, T) new tokens; returns the logits of the *last* position only, (B, 1, V), whatever ``last_only``.

        Only the last position is computed: a 150k vocabulary times a long prompt would not fit, and the
        decoders read ``[:, -1]`` alone.
        """
        new_mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        positions = state.positions[:, None] + new_mask.cumsum(dim=1) - 1  # (B, T): real tokens before each one
        state.mask = torch.cat([state.mask, new_mask], dim=1)
        output = self.hf(
            input_ids=input_ids,
            attention_mask=state.mask,
            position_ids=positions.clamp(min=0),
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_name: state.cache},
        )
        state.cache = getattr(output, self._cache_name)
        state.positions = state.positions + new_mask.sum(dim=1)
        return output.logits

    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())


class HFTokenizer:
    """A transformers tokenizer with the names our decoders use (``pad_id``, ``eos_id``, ``decode``, ...).

    Args:
        tokenizer: the ``AutoTokenizer`` of the model directory.
        eos_token_ids: the ids that end a candidate (the generation config's, else the tokenizer's); the first
            becomes ``eos_id``, the others are added to every request's ``stop_token_ids``.
    """

    def __init__(self, tokenizer: Any, eos_token_ids: Sequence[int]) -> None:
        if not eos_token_ids:
            raise AigcError("the tokenizer has no end-of-sequence token and generation_config.json names none; "
                            "set eos_token_id in generation_config.json", param="model")
        self.tokenizer = tokenizer
        self.eos_token_ids = tuple(eos_token_ids)
        self.eos_id = self.eos_token_ids[0]
        # Left padding is masked out, so its id only has to exist; eos is the usual stand-in (GPT-2, Llama have none).
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self.bos_id = tokenizer.bos_token_id
        self.sep_id = tokenizer.sep_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (watermark detection and scoring use it)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """The text of each token on its own (logprobs, explanations)."""
        return [self.tokenizer.decode([token_id], skip_special_tokens=False) for token_id in ids]


# -- the backend ------------------------------------------------------------------------------------------------


class TransformersBackend:
    """A :class:`~aigc_studio.backends.base.Backend` over a ``transformers`` causal language model.

    Build it with :meth:`from_directory`. ``prompt_format`` is ``"text"`` for pretrained and chat models and
    ``"records"`` for a conditional model exported from this project (its generation_config.json says so).
    """

    def __init__(self, decoder: HFDecoder, tokenizer: HFTokenizer, *, name: str, prompt_format: PromptFormat = "text",
                 use_chat_template: bool = True, defaults: SamplingParams | None = None,
                 delexicalized_slots: Sequence[str] = (), weights_sha256: str = "") -> None:
        if prompt_format == "records" and (tokenizer.bos_id is None or tokenizer.sep_id is None):
            raise AigcError(f"model {name!r}: the records prompt format needs <bos> and <sep> tokens, and its tokenizer "
                            "lacks one; use prompt_format = \"text\"", param="prompt_format")
        self.model = decoder
        self.tokenizer = tokenizer
        self.use_chat_template = use_chat_template and bool(getattr(tokenizer.tokenizer, "chat_template", None))
        self.defaults = defaults or SamplingParams()
        self.delexicalized_slots = list(delexicalized_slots)
        self.info = BackendInfo(name=name, backend="transformers", prompt_format=prompt_format,
                                context_length=decoder.config.block_size, model_type=decoder.hf.config.model_type,
                                weights_sha256=weights_sha256)

    @classmethod
    def from_directory(cls, directory: str | Path, *, name: str | None = None, device: str = "cpu",
                       dtype: str = "float32", prompt_format: PromptFormat | None = None,
                       context_length: int | None = None, use_chat_template: bool = True,
                       quantize: str = "none") -> TransformersBackend:
        """Load a model directory (``config.json``, ``*.safetensors``, tokenizer files) from the local disk.

        Args:
            directory: a local directory; download hub models first (``hf download ID --local-dir DIR``).
            name: the model's name in results and the registry (default: the directory's name).
            device: ``cpu``, ``cuda`` or ``cuda:N``.
            dtype: ``float32``, ``bfloat16`` or ``float16``.
            prompt_format: None reads ``prompt_format`` from generation_config.json (written by ``aigc export``),
                else ``"text"``.
            context_length: prompt + completion limit; None uses the model config's ``max_position_embeddings``
                (``n_positions``).
            use_chat_template: render text prompts with the tokenizer's chat template when it has one.
            quantize: ``"int8"`` swaps the model's linear layers for int8 ones (CPU and float32 only;
                :mod:`~aigc_studio.models.quantization`).

        Raises:
            AigcError: transformers is missing, the directory or its files are missing or unreadable, weights
                are not safetensors, the dtype is unknown, the context length is unknown, or ``quantize``
                cannot run on this device and dtype.
        """
        transformers = _transformers()
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise AigcError(f"{directory} is not a transformers model directory (no config.json); pass the folder "
                            "that holds config.json, tokenizer files and *.safetensors", param="model")
        weight_files = sorted(directory.glob("*.safetensors"))
        if not weight_files:
            raise AigcError(f"{directory} has no *.safetensors weights; pickled .bin checkpoints are not loaded (they can "
                            "run code); convert them to safetensors first", param="model")
        if dtype not in DTYPES:
            raise AigcError(f"unknown dtype {dtype!r}; use one of: {', '.join(DTYPES)}", param="dtype")
        check_quantization(quantize)  # before the slow load: an unknown name fails at once
        extra = _read_json(directory / "generation_config.json")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(directory), local_files_only=True, use_safetensors=True, dtype=DTYPES[dtype])
        except (OSError, ValueError, KeyError) as error:
            raise AigcError(f"transformers cannot load {directory}: {_first_line(error)}; check that it is a causal "
                            "language model directory with its tokenizer", param="model") from None
        try:
            model.to(device)
        except (RuntimeError, AssertionError) as error:
            raise AigcError(f"cannot put the model on {device!r}: {_first_line(error)}; use cpu or an available "
                            "cuda device", param="device") from None
        model.eval()
        quantize_model(model, quantize)
        limit = context_length or _config_context(model.config)
        if limit is None:
            raise AigcError(f"{directory}/config.json states no context length (max_position_embeddings); set "
                            "context_length for this model in aigc.toml", param="context_length")
        generation_config = getattr(model, "generation_config", None)
        eos = _as_list(getattr(generation_config, "eos_token_id", None)) or _as_list(tokenizer.eos_token_id)
        return cls(
            HFDecoder(model, limit), HFTokenizer(tokenizer, eos),
            name=name or directory.name,
            prompt_format=prompt_format or extra.get("prompt_format", "text"),
            use_chat_template=use_chat_template,
            defaults=_default_params(generation_config),
            delexicalized_slots=extra.get("delexicalized_slots", []),
            weights_sha256=weights_digest(weight_files),
        )

    def default_params(self) -> SamplingParams:
        """The sampling defaults of the model's generation_config.json (greedy unless it says ``do_sample``)."""
        return self.defaults.replace()

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids the model is conditioned on (see the module docstring)."""
        if not isinstance(prompt, str):
            raise AigcError(f"prompt must be a string, got {type(prompt).__name__}", param="prompt")
        tokenizer = self.tokenizer
        if self.info.prompt_format == "records":
            source, _, _ = delexicalize(prompt, None, self.delexicalized_slots)
            return [tokenizer.bos_id, *tokenizer.encode(source), tokenizer.sep_id]
        if self.use_chat_template:
            text = tokenizer.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                           add_generation_prompt=True)
            ids = tokenizer.tokenizer.encode(text, add_special_tokens=False)
        else:
            ids = tokenizer.tokenizer.encode(prompt, add_special_tokens=True)
        if not ids and tokenizer.bos_id is not None:
            ids = [tokenizer.bos_id]  # an empty prompt still needs one token to condition on
        return list(ids)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[GenerationResult]:
        params = self._request_params(params)
        prompt_ids = self._encode_all(prompts)
        outputs = generate(self.model, self.tokenizer, prompt_ids, params)
        return [
            GenerationResult(prompt=prompt, candidates=[self._candidate(completion, params, prompt) for completion in output.completions],
                             prompt_tokens=len(ids))
            for prompt, ids, output in zip(prompts, prompt_ids, outputs)
        ]

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[StreamChunk]:
        params = self._request_params(params)
        (prompt_ids,) = self._encode_all([prompt])
        events = stream(self.model, self.tokenizer, prompt_ids, params)  # checks n and num_beams at once
        return self._chunks(events, params, self._slot_values(prompt))

    @torch.inference_mode()
    def score(self, prompt: str, continuation: str) -> list[TokenLogprob]:
        (prompt_ids,) = self._encode_all([prompt])
        _, continuation, _ = delexicalize(prompt, continuation, self.delexicalized_slots)
        continuation_ids = self.tokenizer.encode(continuation)
        if self.info.prompt_format == "records":
            continuation_ids.append(self.tokenizer.eos_id)  # a complete target ends with <eos>
        ids = prompt_ids + continuation_ids
        if len(ids) > self.info.context_length:
            raise AigcError(f"prompt and continuation are {len(ids)} tokens; the model's context is "
                            f"{self.info.context_length}; shorten the text")
        device = next(self.model.parameters()).device
        logits = self.model.hf(input_ids=torch.tensor([ids], device=device)).logits
        logprobs = F.log_softmax(logits[0, len(prompt_ids) - 1:-1].float(), dim=-1)  # (len(continuation), V)
        chosen = logprobs.gather(1, torch.tensor(continuation_ids, device=device)[:, None])[:, 0].tolist()
        return [self._token_logprob(token_id, value, None) for token_id, value in zip(continuation_ids, chosen)]

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _request_params(self, params: SamplingParams) -> SamplingParams:
        """``params`` checked, with the model's other end-of-sequence ids (e.g. Llama 3's ``<|eot_id|>``) as stop tokens."""
        params.validate()
        extra = [token_id for token_id in self.tokenizer.eos_token_ids[1:] if token_id not in params.stop_token_ids]
        return params.replace(stop_token_ids=[*params.stop_token_ids, *extra]) if extra else params

    def _encode_all(self, prompts: Sequence[str]) -> list[list[int]]:
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise AigcError("prompts must be a list of strings", param="prompt")
        prompt_ids = [self.encode_prompt(prompt) for prompt in prompts]
        check_prompts(prompt_ids, self.model.config.vocab_size, self.info.context_length)
        return prompt_ids

    def _slot_values(self, prompt: str) -> dict[str, str]:
        if self.info.prompt_format != "records" or not self.delexicalized_slots:
            return {}
        return delexicalize(prompt, None, self.delexicalized_slots)[2]

    def _candidate(self, completion: Completion, params: SamplingParams, prompt: str) -> Candidate:
        logprobs = None
        if params.logprobs is not None:
            top = completion.top_logprobs or [None] * len(completion.token_ids)
            logprobs = [self._token_logprob(token_id, value, alternatives)
                        for token_id, value, alternatives in zip(completion.token_ids, completion.logprobs, top)]
        return Candidate(text=relexicalize(completion.text, self._slot_values(prompt)), finish_reason=completion.finish_reason,
                         num_tokens=len(completion.token_ids), logprobs=logprobs,
                         cumulative_logprob=completion.cumulative_logprob)

    def _chunks(self, events: Iterator[Any], params: SamplingParams, slot_values: dict[str, str]) -> Iterator[StreamChunk]:
        pending = ""  # text that may be the start of a placeholder, held back until it is decided
        for event in events:
            logprob = self._token_logprob(event.token_id, event.logprob, event.top_logprobs) if params.logprobs is not None else None
            pending = relexicalize(pending + event.text, slot_values)
            keep = 0 if event.finish_reason else _placeholder_prefix_length(pending, slot_values)
            text, pending = pending[:len(pending) - keep], pending[len(pending) - keep:]
            yield StreamChunk(text=text, logprob=logprob, finish_reason=event.finish_reason)

    def _token_logprob(self, token_id: int, value: float, alternatives: dict[int, float] | None) -> TokenLogprob:
        strings = self.tokenizer.token_strings
        top = dict(zip(strings(list(alternatives)), alternatives.values())) if alternatives else {}
        return TokenLogprob(token=strings([token_id])[0], logprob=value if math.isfinite(value) else -1e9, top_logprobs=top)


def weights_digest(weight_files: Sequence[Path]) -> str:
    """The sha256 of a single weights file (as the builtin backend reports it), or of the list of the shards'
    ``name sha256`` lines for a sharded checkpoint."""
    if len(weight_files) == 1:
        return sha256_file(weight_files[0])
    import hashlib

    lines = "".join(f"{path.name} {sha256_file(path)}\n" for path in weight_files)
    return hashlib.sha256(lines.encode()).hexdigest()


def config_context_length(directory: str | Path) -> int | None:
    """The context length a transformers ``config.json`` states, read without loading the model (registry listings)."""
    return _config_context(_read_json(Path(directory) / "config.json"))


def _config_context(config: Any) -> int | None:
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key, None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _default_params(generation_config: Any) -> SamplingParams:
    """Our defaults from a transformers GenerationConfig: its sampling values when ``do_sample``, else greedy."""
    if generation_config is None:
        return SamplingParams(temperature=0.0)
    values: dict[str, Any] = {}
    if getattr(generation_config, "do_sample", False):
        values |= {"temperature": generation_config.temperature, "top_k": generation_config.top_k,
                   "top_p": generation_config.top_p, "min_p": getattr(generation_config, "min_p", None)}
    else:
        values["temperature"] = 0.0
    values |= {"repetition_penalty": generation_config.repetition_penalty, "max_tokens": generation_config.max_new_tokens,
               "num_beams": generation_config.num_beams}
    try:
        return SamplingParams.from_dict(values)
    except AigcError as error:
        raise AigcError(f"generation_config.json: {error}; fix that value", param=error.param) from None


def _placeholder_prefix_length(text: str, slot_values: dict[str, str]) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of a placeholder (0 if none)."""
    for length in range(min(len(text), max((len(token) - 1 for token in slot_values), default=0)), 0, -1):
        if any(token.startswith(text[-length:]) for token in slot_values):
            return length
    return 0


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(item) for item in value] if isinstance(value, (list, tuple)) else [int(value)]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AigcError(f"{path} is not valid JSON ({error}); fix or remove it", param="model") from None
    return data if isinstance(data, dict) else {}


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
