"""The metric registry: every per-candidate metric as a named, directed, pure function of (candidate, context).

The judge and ``aigc eval`` pick metrics by name from :data:`METRICS` and combine them. Each
:class:`Metric` knows its direction (``"higher"`` or ``"lower"`` is better), its range, and what it needs
from the :class:`EvalContext` (references, attributes, a scorer, ...), so callers can keep just the
metrics that apply (:meth:`Metric.applies_to`). Corpus-level scores (corpus BLEU/chrF, E2E BLEU,
distinct-n, self-BLEU, the ChatGLM Chinese scores) are plain functions in their modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from aigc_studio.errors import AigcError
from aigc_studio.evaluation import constraints, fidelity, fluency, originality, readability, reference
from aigc_studio.evaluation.fluency import LogprobScorer
from aigc_studio.evaluation.originality import NgramIndex

Language = Literal["en", "zh"]
LANGUAGES: tuple[str, ...] = ("en", "zh")
Direction = Literal["higher", "lower"]
# The context fields a metric may need; each must be non-empty (not None) for the metric to apply.
ContextField = Literal["attributes", "references", "keywords", "forbidden_words", "length_range", "lm_scorer", "ngram_index"]


@dataclass(frozen=True)
class EvalContext:
    """Everything a candidate is judged against, for one request.

    Args:
        attributes: the request's attributes (``{"name": "The Eagle", ...}``) for fidelity.
        references: human references for BLEU, chrF and ROUGE-L.
        keywords: terms the candidate must contain.
        forbidden_words: terms it must not contain.
        length_range: ``(min, max)`` length in words (characters for Chinese), or None.
        language: ``"en"`` or ``"zh"``; picks the BLEU tokenizer and the readability measure.
        lm_scorer: ``(text) -> token log-probabilities`` for perplexity (a backend's ``score``).
        ngram_index: the training corpus's :class:`NgramIndex` for originality.

    Raises:
        AigcError: an unknown language or an invalid length range.
    """

    attributes: Mapping[str, str] = field(default_factory=dict)
    references: Sequence[str] = ()
    keywords: Sequence[str] = ()
    forbidden_words: Sequence[str] = ()
    length_range: tuple[int, int] | None = None
    language: Language = "en"
    lm_scorer: LogprobScorer | None = None
    ngram_index: NgramIndex | None = None

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise AigcError(f"unknown language {self.language!r}; use one of {', '.join(LANGUAGES)}", param="language")
        if self.length_range is not None:
            constraints.check_length_range(*self.length_range)

    @property
    def bleu_tokenizer(self) -> reference.BleuTokenizer:
        """sacrebleu's tokenizer for this language: ``13a`` for English, ``zh`` for Chinese."""
        return "zh" if self.language == "zh" else "13a"


def _is_unset(value: object) -> bool:
    return value is None or (isinstance(value, (Sequence, Mapping)) and len(value) == 0)


@dataclass(frozen=True)
class Metric:
    """A named per-candidate metric.

    Args:
        name: registry key, e.g. ``"slot_error_rate"``.
        direction: ``"higher"`` or ``"lower"`` — which way is better.
        fn: ``(candidate, context) -> float``; pure.
        description: one line for reports and ``--help``.
        range: ``(lowest, highest)`` possible value (``math.inf`` when unbounded).
        requires: context fields that must be set for the metric to apply.
        languages: languages the metric is defined for.
    """

    name: str
    direction: Direction
    fn: Callable[[str, EvalContext], float]
    description: str
    range: tuple[float, float]
    requires: tuple[ContextField, ...] = ()
    languages: tuple[str, ...] = LANGUAGES

    def missing_requirements(self, context: EvalContext) -> list[str]:
        """The required context fields that are None or empty in ``context``."""
        return [name for name in self.requires if _is_unset(getattr(context, name))]

    def applies_to(self, context: EvalContext) -> bool:
        """Whether ``context`` has what this metric needs and is in a language it is defined for."""
        return context.language in self.languages and not self.missing_requirements(context)

    def __call__(self, candidate: str, context: EvalContext) -> float:
        """Score ``candidate``.

        Raises:
            AigcError: the context lacks a required field or has a language the metric does not cover.
        """
        missing = self.missing_requirements(context)
        if missing:
            raise AigcError(
                f"metric {self.name!r} needs {', '.join(missing)} in the evaluation context; provide them or drop the metric",
                param="metrics",
            )
        if context.language not in self.languages:
            raise AigcError(
                f"metric {self.name!r} is defined for {', '.join(self.languages)}, not {context.language!r}; "
                "drop it for this language",
                param="metrics",
            )
        return float(self.fn(candidate, context))


def _length_compliance(candidate: str, context: EvalContext) -> float:
    assert context.length_range is not None  # guaranteed by Metric.__call__ (requires length_range)
    return constraints.length_compliance(candidate, *context.length_range)


def _perplexity(candidate: str, context: EvalContext) -> float:
    assert context.lm_scorer is not None  # guaranteed by Metric.__call__ (requires lm_scorer)
    return fluency.perplexity(candidate, context.lm_scorer)


def _longest_copied_span(candidate: str, context: EvalContext) -> float:
    assert context.ngram_index is not None  # guaranteed by Metric.__call__ (requires ngram_index)
    return originality.longest_copied_span(candidate, context.ngram_index)


def _copied_ngram_share(candidate: str, context: EvalContext) -> float:
    assert context.ngram_index is not None  # guaranteed by Metric.__call__ (requires ngram_index)
    return originality.copied_ngram_share(candidate, context.ngram_index)


_ALL_METRICS: tuple[Metric, ...] = (
    Metric(
        name="sentence_bleu", direction="higher", range=(0.0, 100.0), requires=("references",),
        fn=lambda candidate, context: reference.sentence_bleu(candidate, context.references, tokenize=context.bleu_tokenizer),
        description="sentence-level BLEU-4 against the references (sacrebleu, exp smoothing)",
    ),
    Metric(
        name="chrf", direction="higher", range=(0.0, 100.0), requires=("references",),
        fn=lambda candidate, context: reference.sentence_chrf(candidate, context.references),
        description="sentence-level chrF (character 6-grams, beta 2) against the references",
    ),
    Metric(
        name="rouge_l", direction="higher", range=(0.0, 1.0), requires=("references",),
        fn=lambda candidate, context: reference.rouge_l(candidate, context.references),
        description="ROUGE-L F1 (longest common token subsequence), best over the references",
    ),
    Metric(
        name="slot_error_rate", direction="lower", range=(0.0, 1.0), requires=("attributes",),
        fn=lambda candidate, context: fidelity.slot_error_rate(candidate, context.attributes),
        description="share of input attribute values missing from or contradicted by the text",
    ),
    Metric(
        name="keyword_coverage", direction="higher", range=(0.0, 1.0), requires=("keywords",),
        fn=lambda candidate, context: constraints.keyword_coverage(candidate, context.keywords),
        description="share of the required keywords present",
    ),
    Metric(
        name="forbidden_word_hits", direction="lower", range=(0.0, math.inf), requires=("forbidden_words",),
        fn=lambda candidate, context: constraints.forbidden_word_hits(candidate, context.forbidden_words),
        description="occurrences of forbidden words",
    ),
    Metric(
        name="length_compliance", direction="higher", range=(0.0, 1.0), requires=("length_range",),
        fn=_length_compliance, description="1 inside the length range, falling linearly outside it",
    ),
    Metric(
        name="perplexity", direction="lower", range=(1.0, math.inf), requires=("lm_scorer",),
        fn=_perplexity, description="exp(-mean token log-probability) under the given language model",
    ),
    Metric(
        name="longest_copied_span", direction="lower", range=(0.0, math.inf), requires=("ngram_index",),
        fn=_longest_copied_span, description="longest run of tokens found in the training corpus (hashed n-gram chain)",
    ),
    Metric(
        name="copied_ngram_share", direction="lower", range=(0.0, 1.0), requires=("ngram_index",),
        fn=_copied_ngram_share, description="share of the text's n-grams found in the training corpus",
    ),
    Metric(
        name="flesch_reading_ease", direction="higher", range=(-math.inf, 121.22), languages=("en",),
        fn=lambda candidate, context: readability.flesch_reading_ease(candidate),
        description="Flesch reading ease (English)",
    ),
    Metric(
        name="zh_sentence_length", direction="lower", range=(0.0, math.inf), languages=("zh",),
        fn=lambda candidate, context: readability.chinese_average_sentence_length(candidate),
        description="average Chinese sentence length in characters",
    ),
    Metric(
        name="zh_common_char_share", direction="higher", range=(0.0, 1.0), languages=("zh",),
        fn=lambda candidate, context: readability.chinese_common_char_share(candidate),
        description="share of Chinese characters among the 2,500 most common",
    ),
)

METRICS: dict[str, Metric] = {metric.name: metric for metric in _ALL_METRICS}


def get_metric(name: str) -> Metric:
    """The registered metric called ``name``.

    Raises:
        AigcError: no such metric; the message lists the registered names.
    """
    if name not in METRICS:
        raise AigcError(f"unknown metric {name!r}; choose from: {', '.join(METRICS)}", param="metrics")
    return METRICS[name]
