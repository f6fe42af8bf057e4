"""The judge: rank candidates by a weighted sum of metrics, hard constraints first, and say why.

Each metric's raw value becomes a *goodness* in [0, 1] (1 best) so that metrics with different ranges and
directions can be added:

* metrics with a bounded range are scaled linearly over it and flipped when lower is better
  (``slot_error_rate`` 0.1 → 0.9, ``keyword_coverage`` 0.5 → 0.5);
* unbounded metrics use the fixed curves of :data:`UNBOUNDED_GOODNESS` (``forbidden_word_hits``: 1/(1+hits);
  ``perplexity``: 1/(1 + log10 ppl); ...), fixed rather than relative to the other candidates so that a
  score means the same in every request.

The total is the weighted mean of the goodness of the metrics that apply (weights of metrics that do not
apply drop out). Candidates that break a hard constraint rank after every candidate that does not, whatever
their totals; ties keep generation order. docs/content.md has the per-task weight table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.metrics import EvalContext, get_metric

# Goodness curves for metrics without an upper (or lower) bound; each says at what value goodness is 0.5.
UNBOUNDED_GOODNESS: dict[str, Callable[[float], float]] = {
    # one hit halves the goodness: any forbidden word is already bad
    "forbidden_word_hits": lambda hits: 1.0 / (1.0 + hits),
    # log scale: perplexity 10 scores 0.5, 100 scores 0.33 (character models sit near 3, BPE models near 20)
    "perplexity": lambda perplexity: 1.0 / (1.0 + math.log10(max(perplexity, 1.0))),
    # a copied span as long as the default 8-gram index's n scores 0.5
    "longest_copied_span": lambda span: 1.0 / (1.0 + span / 8.0),
    # 25-character Chinese sentences score 0.5; marketing copy favours short ones
    "zh_sentence_length": lambda length: 1.0 / (1.0 + length / 25.0),
    # Flesch scores below 0 (very hard) and above 100 (trivial) are clipped
    "flesch_reading_ease": lambda score: min(max(score, 0.0), 100.0) / 100.0,
}
# Counts are shown as whole numbers in explanations.
_COUNT_METRICS = frozenset({"forbidden_word_hits", "longest_copied_span"})


def goodness(metric_name: str, value: float) -> float:
    """Map a metric's raw value to [0, 1], 1 being best, following its direction.

    Args:
        metric_name: a registered metric.
        value: its raw value.

    Returns:
        The goodness in [0, 1].

    Raises:
        AigcError: the metric is unknown.
    """
    metric = get_metric(metric_name)
    if metric_name in UNBOUNDED_GOODNESS:
        return UNBOUNDED_GOODNESS[metric_name](value)
    low, high = metric.range
    assert math.isfinite(low) and math.isfinite(high), f"unbounded metric {metric_name} needs an UNBOUNDED_GOODNESS curve"
    scaled = min(max((value - low) / (high - low), 0.0), 1.0)
    return scaled if metric.direction == "higher" else 1.0 - scaled


def check_weights(weights: Mapping[str, float]) -> None:
    """Raise :class:`AigcError` for an unknown metric name or a negative or non-finite weight (``param="weights"``)."""
    for name, weight in weights.items():
        get_metric(name)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise AigcError(f"weight of {name} must be a finite number >= 0, got {weight!r}", param="weights")


def score_candidate(text: str, context: EvalContext, metric_names: Sequence[str]) -> dict[str, float]:
    """The raw value of each named metric that applies to ``context`` (the others are left out).

    Raises:
        AigcError: an unknown metric name.
    """
    metrics = [get_metric(name) for name in metric_names]
    return {metric.name: metric(text, context) for metric in metrics if metric.applies_to(context)}


@dataclass
class RankedCandidate:
    """One candidate after judging.

    Attributes:
        rank: 1 is best.
        index: its position among the generated candidates.
        text: the candidate.
        scores: raw metric values (see docs/evaluation.md for directions and ranges).
        total: the weighted mean goodness in [0, 1].
        violations: the hard constraints it breaks (empty when none).
        explanation: why it ranked where it did, in one line.
        weights: the weight of each metric in ``scores`` (the score card: what ranked it and how much).
        flags: governance findings (moderation categories, personal data) as JSON-ready dicts.
    """

    rank: int
    index: int
    text: str
    scores: dict[str, float]
    total: float
    violations: list[str] = field(default_factory=list)
    explanation: str = ""
    weights: dict[str, float] = field(default_factory=dict)
    flags: list[dict[str, Any]] = field(default_factory=list)

    @property
    def acceptable(self) -> bool:
        """Whether it meets every hard constraint."""
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _format_value(name: str, value: float) -> str:
    return f"{value:.0f}" if name in _COUNT_METRICS else f"{value:.2f}"


def _explain(
    candidate: RankedCandidate, count: int, weights: Mapping[str, float], best: RankedCandidate | None,
) -> str:
    ordered = sorted(candidate.scores, key=lambda name: -weights[name])
    parts = ", ".join(f"{name} {_format_value(name, candidate.scores[name])} (w {weights[name]:.1f})" for name in ordered)
    head = f"ranked {_ordinal(candidate.rank)} of {count}"
    if candidate.violations and best is not None:
        head += f", after every candidate that meets the hard constraints, because of: {'; '.join(candidate.violations)}"
    elif candidate.violations:
        head += f" (every candidate breaks a hard constraint; this one: {'; '.join(candidate.violations)})"
    tail = f"; total {candidate.total:.2f}"
    if best is not None and best is not candidate and not candidate.violations:
        # The metric that cost the most against the winner, in weighted goodness.
        deficits = {
            name: weights[name] * (goodness(name, best.scores[name]) - goodness(name, candidate.scores[name]))
            for name in candidate.scores if name in best.scores
        }
        worst = max(deficits, key=deficits.__getitem__, default=None)
        if worst is not None and deficits[worst] > 0:
            tail += (f", behind 1st mostly on {worst} ({_format_value(worst, candidate.scores[worst])} vs "
                     f"{_format_value(worst, best.scores[worst])})")
        elif math.isclose(candidate.total, best.total):
            tail += ", tied with 1st (generation order breaks the tie)"
    return f"{head}: {parts}{tail}" if parts else f"{head}{tail}"


def rank_candidates(
    texts: Sequence[str],
    context: EvalContext,
    weights: Mapping[str, float],
    *,
    violations: Sequence[Sequence[str]] | None = None,
) -> list[RankedCandidate]:
    """Score every candidate, rank them (hard constraints first, then total) and explain each rank.

    Args:
        texts: the candidates, in generation order.
        context: what they are judged against (the same for all).
        weights: metric name → weight; metrics that do not apply to ``context`` are skipped.
        violations: for each candidate, the hard constraints it breaks (messages); None means none.

    Returns:
        The candidates best first, each with its scores, total, violations and explanation.

    Raises:
        AigcError: an unknown metric or a bad weight, or ``violations`` of another length than ``texts``.
    """
    check_weights(weights)
    if violations is not None and len(violations) != len(texts):
        raise AigcError(f"{len(violations)} violation lists for {len(texts)} candidates; give one per candidate",
                        param="violations")
    used = [name for name, weight in weights.items() if weight > 0]
    candidates = []
    for index, text in enumerate(texts):
        scores = score_candidate(text, context, used)
        weight_sum = sum(weights[name] for name in scores)
        total = sum(weights[name] * goodness(name, value) for name, value in scores.items()) / weight_sum if weight_sum else 0.0
        broken = list(violations[index]) if violations is not None else []
        candidates.append(RankedCandidate(rank=0, index=index, text=text, scores=scores, total=total, violations=broken,
                                          weights={name: weights[name] for name in scores}))
    return order_candidates(candidates, weights)


def order_candidates(candidates: list[RankedCandidate], weights: Mapping[str, float]) -> list[RankedCandidate]:
    """Sort candidates (those meeting every hard constraint first, then by total), renumber and re-explain them.

    Used by :func:`rank_candidates` and again by later steps that add violations (output moderation).
    """
    # sorted() is stable, so equal keys keep generation order.
    candidates = sorted(candidates, key=lambda candidate: (bool(candidate.violations), -candidate.total))
    for rank, candidate in enumerate(candidates, start=1):
        candidate.rank = rank
    best = candidates[0] if candidates and not candidates[0].violations else None
    for candidate in candidates:
        candidate.explanation = _explain(candidate, len(candidates), weights, best)
    return candidates
