"""Text generation with the project's own models: sampling parameters, logits processors, batched KV-cached
sampling (:func:`generate`, on :class:`DecodeBatch`), streaming (:func:`stream`) and :func:`beam_search`.
The serving engine is :mod:`aigc_studio.generation.engine`. See docs/generation.md."""

from aigc_studio.generation.beam_search import beam_search
from aigc_studio.generation.logits_processors import (
    LogitsProcessor,
    MinP,
    MinTokens,
    NoRepeatNGram,
    PresenceFrequencyPenalty,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    apply_logits_processors,
    build_logits_processors,
)
from aigc_studio.generation.outputs import Completion, FinishReason, GenerationOutput, StreamEvent
from aigc_studio.generation.sampler import DecodeBatch, generate, sample_with_uniforms, stream
from aigc_studio.generation.sampling_params import SamplingParams

__all__ = [
    "Completion",
    "DecodeBatch",
    "FinishReason",
    "GenerationOutput",
    "LogitsProcessor",
    "MinP",
    "MinTokens",
    "NoRepeatNGram",
    "PresenceFrequencyPenalty",
    "RepetitionPenalty",
    "SamplingParams",
    "StreamEvent",
    "Temperature",
    "TopK",
    "TopP",
    "apply_logits_processors",
    "beam_search",
    "build_logits_processors",
    "generate",
    "sample_with_uniforms",
    "stream",
]
