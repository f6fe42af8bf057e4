"""Reference-based metrics: BLEU and chrF through sacrebleu, ROUGE-L by hand, and the official E2E BLEU.

Corpus scores take one list of references per hypothesis (any number each, multi-reference). sacrebleu
wants reference *streams* instead (stream ``k`` holds every hypothesis's ``k``-th reference), so
:func:`_reference_streams` transposes and pads the shorter lists with ``None``, which sacrebleu skips.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

from sacrebleu.metrics import BLEU, CHRF

from aigc_studio.errors import AigcError
from aigc_studio.evaluation.text import tokenize as tokenize_text
from aigc_studio.fileio import require_file

BleuTokenizer = Literal["13a", "zh", "intl", "char", "none"]
BLEU_TOKENIZERS: tuple[str, ...] = ("13a", "zh", "intl", "char", "none")


def _check_tokenizer(tokenizer: str) -> None:
    if tokenizer not in BLEU_TOKENIZERS:
        raise AigcError(f"unknown BLEU tokenizer {tokenizer!r}; use one of {', '.join(BLEU_TOKENIZERS)}", param="tokenize")


def _check_corpus(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(hypotheses) != len(references):
        raise AigcError(
            f"{len(hypotheses)} hypotheses but {len(references)} reference lists; give one list of references per hypothesis",
            param="references",
        )
    if not hypotheses:
        raise AigcError("no hypotheses to score; give at least one", param="hypotheses")
    for index, refs in enumerate(references):
        if isinstance(refs, str) or not refs:
            raise AigcError(
                f"hypothesis {index} has no reference list (got {refs!r}); give each hypothesis a non-empty list of references",
                param="references",
            )


def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    depth = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(depth)]


@lru_cache(maxsize=16)
def _sentence_bleu_scorer(tokenizer: str, lowercase: bool) -> BLEU:
    # effective_order: a short sentence with no 4-gram match still gets a score instead of 0 (sacrebleu's
    # recommended setting for sentence-level BLEU, with its default "exp" smoothing).
    return BLEU(tokenize=tokenizer, lowercase=lowercase, effective_order=True)


def corpus_bleu(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    tokenize: BleuTokenizer = "13a",
    lowercase: bool = False,
) -> float:
    """Corpus BLEU-4 (Papineni et al. 2002) with multiple references, via sacrebleu.

    Args:
        hypotheses: one output per input.
        references: for each hypothesis, its list of references (lists may differ in length).
        tokenize: sacrebleu tokenizer: ``"13a"`` (English, the WMT default) or ``"zh"`` (Chinese characters).
        lowercase: compare case-insensitively.

    Returns:
        BLEU in [0, 100].

    Raises:
        AigcError: the counts differ, a hypothesis has no references, or the tokenizer is unknown.
    """
    _check_tokenizer(tokenize)
    _check_corpus(hypotheses, references)
    scorer = BLEU(tokenize=tokenize, lowercase=lowercase)
    return scorer.corpus_score(list(hypotheses), _reference_streams(references)).score


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus chrF (Popović 2015; character 6-grams, beta 2) with multiple references, via sacrebleu.

    Returns:
        chrF in [0, 100].

    Raises:
        AigcError: the counts differ or a hypothesis has no references.
    """
    _check_corpus(hypotheses, references)
    return CHRF().corpus_score(list(hypotheses), _reference_streams(references)).score


def sentence_bleu(hypothesis: str, references: Sequence[str], *, tokenize: BleuTokenizer = "13a") -> float:
    """Sentence-level BLEU for ranking candidates (exp smoothing, effective n-gram order).

    Returns:
        BLEU in [0, 100].

    Raises:
        AigcError: no references, or an unknown tokenizer.
    """
    _check_tokenizer(tokenize)
    _check_corpus([hypothesis], [references])
    return _sentence_bleu_scorer(tokenize, False).sentence_score(hypothesis, list(references)).score


def sentence_chrf(hypothesis: str, references: Sequence[str]) -> float:
    """Sentence-level chrF (the best-matching reference's statistics, as sacrebleu does).

    Returns:
        chrF in [0, 100].

    Raises:
        AigcError: no references.
    """
    _check_corpus([hypothesis], [references])
    return CHRF().sentence_score(hypothesis, list(references)).score


def _lcs_length(first: Sequence[str], second: Sequence[str]) -> int:
    # Classic dynamic programme keeping one row: O(len(first) * len(second)) time, O(len(second)) memory.
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for j, other in enumerate(second, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis: str, references: Sequence[str]) -> float:
    """ROUGE-L F1 (Lin 2004): longest common subsequence of tokens, best over the references.

    Tokens are :func:`~aigc_studio.evaluation.text.tokenize`'s (lowercase words; characters for Chinese).
    For each reference, P = LCS / len(hypothesis), R = LCS / len(reference), F1 = 2PR / (P + R); the
    maximum F1 over references is returned.

    Returns:
        ROUGE-L F1 in [0, 1]; 0 when the hypothesis has no tokens.

    Raises:
        AigcError: no references.
    """
    _check_corpus([hypothesis], [references])
    hypothesis_tokens = tokenize_text(hypothesis)
    best = 0.0
    for reference in references:
        reference_tokens = tokenize_text(reference)
        lcs = _lcs_length(hypothesis_tokens, reference_tokens)
        if lcs == 0:
            continue
        precision, recall = lcs / len(hypothesis_tokens), lcs / len(reference_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def corpus_rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean of :func:`rouge_l` over the corpus, in [0, 1].

    Raises:
        AigcError: the counts differ or a hypothesis has no references.
    """
    _check_corpus(hypotheses, references)
    return sum(rouge_l(hypothesis, refs) for hypothesis, refs in zip(hypotheses, references)) / len(hypotheses)


def e2e_bleu(hypotheses: Sequence[str], references_per_mr: Sequence[Sequence[str]]) -> float:
    """BLEU exactly as the official E2E NLG Challenge script (e2e-metrics) reports it.

    Corpus BLEU-4 on 13a tokens, lowercased, no smoothing, all human references of an MR used together.

    Args:
        hypotheses: one output per MR, in the order of ``references_per_mr`` (see :func:`load_e2e_references`).
        references_per_mr: the references of each MR.

    Returns:
        BLEU on the official script's 0–1 scale (e.g. 0.7109), not sacrebleu's 0–100.

    Raises:
        AigcError: the counts differ or an MR has no references.
    """
    _check_corpus(hypotheses, references_per_mr)
    # force: E2E system outputs are often tokenized ("centre ."); the official score is computed on them as
    # they are, so sacrebleu's "looks tokenized" warning does not apply.
    scorer = BLEU(tokenize="13a", lowercase=True, smooth_method="none", force=True)
    return scorer.corpus_score(list(hypotheses), _reference_streams(references_per_mr)).score / 100


def load_e2e_references(csv_path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Read an E2E CSV (columns ``mr``, ``ref``) and group the references by MR.

    Args:
        csv_path: e.g. ``devset.csv`` of the E2E data set.

    Returns:
        ``(mrs, references_per_mr)``: the distinct MRs in order of first appearance (the order system
        outputs are listed in) and, for each, its references in file order.

    Raises:
        AigcError: the file is missing, lacks the ``mr``/``ref`` columns, or has no rows.
    """
    path = require_file(csv_path, "E2E CSV file")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "mr" not in columns or "ref" not in columns:
            raise AigcError(f"{path} needs columns 'mr' and 'ref'; its columns are: {', '.join(columns) or '(none)'}")
        grouped: dict[str, list[str]] = {}
        for row in reader:
            grouped.setdefault(row["mr"], []).append(row["ref"])
    if not grouped:
        raise AigcError(f"{path} has no rows; it must hold one (mr, ref) pair per line")
    return list(grouped), list(grouped.values())
