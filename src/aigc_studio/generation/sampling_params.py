"""``SamplingParams``: how to pick each next token, in the OpenAI / vLLM vocabulary.

One dataclass travels from every entry point (CLI flags, the HTTP request's ``to_sampling_params()``, the
content pipeline) to :func:`~aigc_studio.generation.sampler.generate`. Field names and meanings follow the
OpenAI completions API and vLLM's ``SamplingParams``, with Hugging Face's ``no_repeat_ngram_size``,
``num_beams`` and ``length_penalty`` added. docs/generation.md has the table of ranges.

Values are checked when the object is built (and again by :meth:`SamplingParams.validate`, for objects changed
afterwards): a bad value raises :class:`~aigc_studio.errors.AigcError` naming the field, the value and the
allowed range, so the server can answer 400 with ``param`` set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aigc_studio.errors import AigcError

if TYPE_CHECKING:
    from aigc_studio.safety.watermark import WatermarkConfig

# vLLM's default cap on returned alternatives per token; more is rarely useful and costs a (B, k) copy per step.
MAX_TOP_LOGPROBS = 20
# OpenAI's range for presence_penalty and frequency_penalty.
MAX_ABS_PENALTY = 2.0


@dataclass
class SamplingParams:
    """Decoding settings for one request (all candidates of all its prompts share them).

    Attributes:
        temperature: divides the logits before sampling; 0 means greedy (always the most likely token).
        top_k: sample only among the k most likely tokens; 0 turns it off.
        top_p: nucleus sampling: the smallest set of tokens whose probability reaches top_p; 1 turns it off.
        min_p: drop tokens less likely than min_p times the most likely one; 0 turns it off.
        repetition_penalty: CTRL's penalty on every token already in the prompt or the completion
            (positive logits divided by it, negative ones multiplied); 1 turns it off, > 1 discourages repeats.
        presence_penalty: OpenAI's: subtracted once from the logit of every token the completion already has.
        frequency_penalty: OpenAI's: subtracted from a token's logit once per time the completion has it.
        no_repeat_ngram_size: forbid any n-gram of this size from occurring twice; 0 turns it off.
        max_tokens: most new tokens per candidate (also clipped to what is left of the model's context).
        min_tokens: the end-of-sequence token, the stop tokens and stop strings cannot end a candidate
            before it has this many new tokens.
        stop: strings that end a candidate; the text is cut just before the first one.
        stop_token_ids: token ids that end a candidate, in addition to the tokenizer's ``<eos>``.
        n: candidates per prompt (with beam search: how many of the best finished beams to return).
        seed: makes sampling reproducible: candidate j of a prompt always draws the same random numbers for
            the same seed, whatever else is in the batch; None draws fresh randomness.
        num_beams: beams for beam search; 1 means sampling (or greedy) decoding.
        length_penalty: beam search ranks a finished beam by sum(logprobs) / length ** length_penalty;
            > 0 favours longer texts, < 0 shorter ones.
        logprobs: None returns only each chosen token's log-probability; k > 0 also returns the k most likely
            alternatives at every position (0..20).
        watermark: a :class:`~aigc_studio.safety.watermark.WatermarkConfig` adds the keyed green-list
            watermark (Kirchenbauer et al. 2023) to every candidate; None leaves text unmarked.
    """

    # sampling
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    # penalties
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    # length and stopping
    max_tokens: int = 128  # room for a product description; OpenAI's 16 cuts most marketing copy short
    min_tokens: int = 0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    # candidates
    n: int = 1
    seed: int | None = None
    # beam search
    num_beams: int = 1
    length_penalty: float = 1.0
    # outputs
    logprobs: int | None = None
    # governance
    watermark: WatermarkConfig | None = None

    def __post_init__(self) -> None:
        # OpenAI accepts a single stop string as well as a list; keep one shape inside.
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.validate()

    @property
    def greedy(self) -> bool:
        """True when every step takes the most likely token (temperature 0)."""
        return self.temperature == 0

    def validate(self) -> SamplingParams:
        """Check every field and return ``self``.

        Raises:
            AigcError: a field has the wrong type or is out of range; ``param`` names the field and the
                message gives the allowed range.
        """
        _check_number("temperature", self.temperature, low=0.0, allowed="a number >= 0 (0 means greedy)")
        _check_integer("top_k", self.top_k, low=0, allowed="an integer >= 0 (0 turns it off)")
        _check_number("top_p", self.top_p, low=0.0, high=1.0, low_inclusive=False, allowed="in (0, 1] (1 turns it off)")
        _check_number("min_p", self.min_p, low=0.0, high=1.0, allowed="in [0, 1] (0 turns it off)")
        _check_number("repetition_penalty", self.repetition_penalty, low=0.0, low_inclusive=False,
                      allowed="a number > 0 (1 turns it off)")
        for name in ("presence_penalty", "frequency_penalty"):
            _check_number(name, getattr(self, name), low=-MAX_ABS_PENALTY, high=MAX_ABS_PENALTY,
                          allowed=f"in [-{MAX_ABS_PENALTY:g}, {MAX_ABS_PENALTY:g}] (0 turns it off)")
        _check_integer("no_repeat_ngram_size", self.no_repeat_ngram_size, low=0, allowed="an integer >= 0 (0 turns it off)")
        _check_integer("max_tokens", self.max_tokens, low=1, allowed="an integer >= 1")
        _check_integer("min_tokens", self.min_tokens, low=0, allowed="an integer >= 0")
        if self.min_tokens > self.max_tokens:
            raise AigcError(f"min_tokens={self.min_tokens} is larger than max_tokens={self.max_tokens}; "
                            "lower min_tokens or raise max_tokens", param="min_tokens")
        if not isinstance(self.stop, list) or not all(isinstance(text, str) and text for text in self.stop):
            raise AigcError(f"stop must be a list of non-empty strings, got {self.stop!r}", param="stop")
        if not isinstance(self.stop_token_ids, list):
            raise AigcError(f"stop_token_ids must be a list of token ids, got {self.stop_token_ids!r}", param="stop_token_ids")
        for token_id in self.stop_token_ids:
            _check_integer("stop_token_ids", token_id, low=0, allowed="token ids >= 0")
        _check_integer("n", self.n, low=1, allowed="an integer >= 1")
        if self.seed is not None:
            _check_integer("seed", self.seed, low=0, allowed="an integer >= 0 or null")
        _check_integer("num_beams", self.num_beams, low=1, allowed="an integer >= 1 (1 means no beam search)")
        if self.num_beams > 1 and self.n > self.num_beams:
            raise AigcError(f"n={self.n} is larger than num_beams={self.num_beams}; beam search returns at most "
                            "num_beams candidates, so raise num_beams or lower n", param="n")
        _check_number("length_penalty", self.length_penalty, allowed="a finite number")
        if self.logprobs is not None:
            _check_integer("logprobs", self.logprobs, low=0, high=MAX_TOP_LOGPROBS,
                           allowed=f"null or an integer in [0, {MAX_TOP_LOGPROBS}]")
        if self.watermark is not None:
            # Imported here: the generation package should not load the safety package unless it is used.
            from aigc_studio.safety.watermark import WatermarkConfig

            if not isinstance(self.watermark, WatermarkConfig):
                raise AigcError("watermark must be a WatermarkConfig built from a key (WatermarkConfig.from_key_file) "
                                f"or null, got {type(self.watermark).__name__}", param="watermark")
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SamplingParams:
        """Build from a mapping (a JSON request, a TOML table, CLI options); ``None`` values keep defaults.

        Raises:
            AigcError: an unknown key (the message lists the known ones) or a bad value.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise AigcError(f"unknown sampling parameter {unknown[0]!r}; known ones are: {', '.join(known)}", param=unknown[0])
        return cls(**{key: value for key, value in values.items() if value is not None})

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (the inverse of :meth:`from_dict`, except that ``watermark`` becomes
        its public description, key id and strength, so the secret key never reaches a log or a record)."""
        values = dataclasses.asdict(dataclasses.replace(self, watermark=None))
        values["watermark"] = None if self.watermark is None else self.watermark.describe()
        return values

    def replace(self, **changes: Any) -> SamplingParams:
        """A copy with ``changes`` applied and checked (e.g. a CLI flag over a model's generation_config)."""
        return dataclasses.replace(self, **changes)


def _range_error(name: str, value: Any, allowed: str) -> AigcError:
    return AigcError(f"{name}={value!r} is out of range; it must be {allowed}", param=name)


def _check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                  low_inclusive: bool = True, allowed: str) -> None:
    # bool is an int subclass, but `temperature=True` is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AigcError(f"{name} must be {allowed}, got {value!r}", param=name)
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise _range_error(name, value, allowed)
    if high is not None and value > high:
        raise _range_error(name, value, allowed)


def _check_integer(name: str, value: Any, *, low: int | None = None, high: int | None = None, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AigcError(f"{name} must be {allowed}, got {value!r}", param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _range_error(name, value, allowed)
