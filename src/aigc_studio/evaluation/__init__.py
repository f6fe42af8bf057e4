"""Evaluation: metrics as pure functions with a name and a direction, and corpus-level scores.

Per-candidate metrics live in the :data:`~aigc_studio.evaluation.metrics.METRICS` registry; corpus-level
scores (corpus BLEU/chrF, the official E2E BLEU, distinct-n, self-BLEU, ChatGLM-style Chinese BLEU/ROUGE)
are functions in their modules. docs/evaluation.md lists every metric with its direction and range.
"""

from aigc_studio.evaluation.metrics import METRICS, EvalContext, Metric, get_metric

__all__ = ["METRICS", "EvalContext", "Metric", "get_metric"]
