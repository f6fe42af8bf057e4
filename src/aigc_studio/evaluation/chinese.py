"""Chinese BLEU-4 and ROUGE computed exactly as the ChatGLM-6B P-Tuning v2 examples do for AdvertiseGen.

THUDM/ChatGLM-6B ``ptuning/main.py`` (``compute_metrics``) scores each (prediction, label) pair with

* BLEU-4 on characters: ``sentence_bleu([list(label)], list(pred), smoothing_function=SmoothingFunction().method3)``,
* ROUGE-1/2/L on jieba words: ``Rouge().get_scores(" ".join(jieba.cut(pred)), " ".join(jieba.cut(label)))``
  (the ``rouge_chinese`` package), F-scores,

rounds each score ×100 to 4 decimals and reports the mean. An empty prediction scores 0 ROUGE, as in
ChatGLM2-6B's version (the first one crashed on it). Reproducing the recipe makes our numbers comparable with
published AdvertiseGen results.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import jieba
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_chinese import Rouge

from aigc_studio.errors import AigcError

# jieba logs "Building prefix dict..." at INFO on first use; evaluation output should stay clean.
jieba.setLogLevel(logging.WARNING)

ROUGE_KEYS: tuple[str, ...] = ("rouge-1", "rouge-2", "rouge-l")


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if isinstance(predictions, str) or isinstance(references, str):
        raise AigcError("predictions and references must be lists of texts, not single strings", param="predictions")
    if len(predictions) != len(references):
        raise AigcError(
            f"{len(predictions)} predictions but {len(references)} references; give one reference per prediction",
            param="references",
        )
    if not predictions:
        raise AigcError("no predictions to score; give at least one", param="predictions")


def _bleu4(prediction: str, reference: str) -> float:
    score = sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3)
    return round(score * 100, 4)


def _rouge(prediction: str, reference: str) -> dict[str, float]:
    hypothesis = " ".join(jieba.cut(prediction))
    label = " ".join(jieba.cut(reference))
    if not hypothesis.split() or not label.split():
        return {key: 0.0 for key in ROUGE_KEYS}
    scores = Rouge().get_scores(hypothesis, label)[0]
    return {key: round(scores[key]["f"] * 100, 4) for key in ROUGE_KEYS}


def chinese_bleu4(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean character-level BLEU-4 (NLTK, smoothing method 3) ×100, ChatGLM style.

    Args:
        predictions: generated texts.
        references: one reference per prediction.

    Returns:
        BLEU-4 in [0, 100]; a reference scored against itself gives 100.

    Raises:
        AigcError: the lists differ in length, are empty, or are single strings.
    """
    _check_pairs(predictions, references)
    return sum(_bleu4(prediction, reference) for prediction, reference in zip(predictions, references)) / len(predictions)


def chinese_rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F-scores on jieba words ×100, ChatGLM style.

    Args:
        predictions: generated texts.
        references: one reference per prediction.

    Returns:
        ``{"rouge-1": ..., "rouge-2": ..., "rouge-l": ...}``, each in [0, 100].

    Raises:
        AigcError: the lists differ in length, are empty, or are single strings.
    """
    _check_pairs(predictions, references)
    per_pair = [_rouge(prediction, reference) for prediction, reference in zip(predictions, references)]
    return {key: sum(scores[key] for scores in per_pair) / len(per_pair) for key in ROUGE_KEYS}
