"""Policy-driven content moderation: lexicons and patterns per category, plus an optional trained classifier.

A *policy* (TOML, see ``policies/default.toml`` and docs/safety.md) lists categories. Each category has
English and Chinese lexicons, regular expressions, harmless phrases to ignore, a threshold and an action
(``block``, ``redact`` or ``flag``). :class:`Moderator` runs every category on the normalised text
(:mod:`aigc_studio.safety.normalize`), scores it, and reports matches with offsets into the original text::

    moderator = Moderator.from_policy()            # the bundled default policy
    result = moderator.moderate("I will k1ll you")
    result.blocked, result.categories["violence"], result.matches[0].text

Scoring: a hit of a term or pattern with weight ``w`` contributes ``w``; hits of distinct rules combine as a
probabilistic sum, ``1 - prod(1 - w)``, so weak terms add up while one strong term is enough. The optional
:class:`ModerationClassifier` (TF-IDF over character n-grams + logistic regression, trained on the user's
own labelled examples) adds its probability ``p`` the same way: ``score = 1 - (1 - lexicon) * (1 - p)``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_json, read_jsonl, require_file, write_jsonl
from aigc_studio.safety.normalize import (
    LEET_EQUIVALENTS,
    SEPARATOR_CLASS,
    NormalizedText,
    collapse_spelled_out,
    is_cjk,
    normalize,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_POLICY_PATH = Path(__file__).with_name("policies") / "default.toml"

# Least to most severe; a result's action is the most severe action of its flagged categories.
ACTIONS: tuple[str, ...] = ("allow", "flag", "redact", "block")
CATEGORY_ACTIONS: tuple[str, ...] = ("flag", "redact", "block")

_POLICY_KEYS = ("categories",)
_CATEGORY_KEYS = ("description", "action", "threshold", "weight", "en", "zh", "patterns", "allow")
_TERM_KEYS = ("term", "weight")
_PATTERN_KEYS = ("regex", "weight")


# ----------------------------------------------------------------------------------------------------------
# policy


@dataclass(frozen=True)
class Rule:
    """One lexicon term or regular expression of a category.

    Attributes:
        kind: ``"en"`` (English term), ``"zh"`` (Chinese term) or ``"re"`` (regular expression).
        text: the term or the expression as written in the policy.
        weight: the score one hit contributes, in (0, 1].
    """

    kind: Literal["en", "zh", "re"]
    text: str
    weight: float

    @property
    def name(self) -> str:
        """How matches cite the rule: ``"en:kill you"``, ``"zh:杀人"``, ``"re:<expression>"``."""
        return f"{self.kind}:{self.text}"


@dataclass(frozen=True)
class CategoryPolicy:
    """One category of a policy (the keys of a ``[categories.<name>]`` table)."""

    name: str
    action: str = "flag"
    threshold: float = 0.5
    description: str = ""
    rules: tuple[Rule, ...] = ()
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    """A moderation policy: its categories in file order and where it came from."""

    categories: tuple[CategoryPolicy, ...]
    source: str = "<dict>"

    def category(self, name: str) -> CategoryPolicy:
        """The category called ``name``; raises :class:`AigcError` listing the names when there is none."""
        for category in self.categories:
            if category.name == name:
                return category
        raise AigcError(f"no category {name!r} in policy {self.source}; categories are: {', '.join(self.names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(category.name for category in self.categories)


def _check_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str, source: str) -> None:
    for key in table:
        if key not in allowed:
            raise AigcError(
                f"unknown key {where}{key!r} in policy {source}; allowed keys are: {', '.join(allowed)}"
            )


def _check_weight(value: Any, where: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise AigcError(f"{where} in policy {source} must be a number in (0, 1], got {value!r}")
    return float(value)


def _parse_rules(
    items: Any, kind: Literal["en", "zh", "re"], default_weight: float, where: str, source: str
) -> list[Rule]:
    if not isinstance(items, list):
        raise AigcError(f"{where} in policy {source} must be a list, got {type(items).__name__}")
    text_key, allowed = ("regex", _PATTERN_KEYS) if kind == "re" else ("term", _TERM_KEYS)
    rules = []
    for index, item in enumerate(items):
        item_where = f"{where}[{index}]"
        if isinstance(item, str):
            text, weight = item, default_weight
        elif isinstance(item, dict):
            _check_keys(item, allowed, f"{item_where}.", source)
            text = item.get(text_key)
            weight = _check_weight(item.get("weight", default_weight), f"{item_where}.weight", source)
        else:
            raise AigcError(f"{item_where} in policy {source} must be a string or a table, got {item!r}")
        if not isinstance(text, str) or not text.strip():
            raise AigcError(f"{item_where} in policy {source} needs a non-empty {text_key!r}")
        if kind == "re":
            try:
                re.compile(text)
            except re.error as error:
                raise AigcError(f"{item_where} in policy {source} is not a valid regular expression: {error}") from None
        rules.append(Rule(kind=kind, text=text.strip() if kind != "re" else text, weight=weight))
    return rules


def _parse_category(name: str, table: Any, source: str) -> CategoryPolicy:
    where = f"categories.{name}"
    if not isinstance(table, dict):
        raise AigcError(f"{where} in policy {source} must be a table ([{where}])")
    _check_keys(table, _CATEGORY_KEYS, f"{where}.", source)
    action = table.get("action", "flag")
    if action not in CATEGORY_ACTIONS:
        raise AigcError(f"{where}.action in policy {source} is {action!r}; use one of: {', '.join(CATEGORY_ACTIONS)}")
    threshold = _check_weight(table.get("threshold", 0.5), f"{where}.threshold", source)
    weight = _check_weight(table.get("weight", 1.0), f"{where}.weight", source)
    rules = (
        _parse_rules(table.get("en", []), "en", weight, f"{where}.en", source)
        + _parse_rules(table.get("zh", []), "zh", weight, f"{where}.zh", source)
        + _parse_rules(table.get("patterns", []), "re", weight, f"{where}.patterns", source)
    )
    allow = table.get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(phrase, str) and phrase.strip() for phrase in allow):
        raise AigcError(f"{where}.allow in policy {source} must be a list of non-empty strings")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise AigcError(f"{where}.description in policy {source} must be a string")
    return CategoryPolicy(
        name=name, action=action, threshold=threshold, description=description,
        rules=tuple(rules), allow=tuple(phrase.strip() for phrase in allow),
    )  # fmt: skip


def policy_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Policy:
    """Build and check a :class:`Policy` from the parsed TOML structure.

    Args:
        data: ``{"categories": {name: {action, threshold, en, zh, patterns, allow, ...}}}``.
        source: what to call the policy in error messages (its path).

    Returns:
        The policy.

    Raises:
        AigcError: an unknown key (named with its file), a bad action, threshold, weight or expression.
    """
    _check_keys(data, _POLICY_KEYS, "", source)
    categories = data.get("categories")
    if not isinstance(categories, dict) or not categories:
        raise AigcError(f"policy {source} has no categories; add at least one [categories.<name>] table")
    return Policy(
        categories=tuple(_parse_category(name, table, source) for name, table in categories.items()),
        source=source,
    )


def load_policy(path: str | Path | None = None) -> Policy:
    """Read a moderation policy from a TOML file (the bundled default policy when ``path`` is None).

    Raises:
        AigcError: the file is missing, is not valid TOML, or breaks a rule of :func:`policy_from_dict`.
    """
    path = require_file(DEFAULT_POLICY_PATH if path is None else path, "policy file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise AigcError(f"policy {path} is not valid TOML ({error}); fix the file") from None
    return policy_from_dict(data, source=str(path))


# ----------------------------------------------------------------------------------------------------------
# compiling terms into expressions


def _letter_class(char: str) -> str:
    options = char + LEET_EQUIVALENTS.get(char, "")
    if len(options) == 1:
        return re.escape(char)
    return "[" + "".join(re.escape(option) for option in options) + "]"


_LETTER_GAP = f"{SEPARATOR_CLASS}{{1,3}}"
_WORD_GAP = f"{SEPARATOR_CLASS}{{1,6}}"


def _english_word_regex(word: str, spaced_min_letters: int) -> str:
    letters = [_letter_class(c) for c in word]
    plain = "".join(letters)
    if len(word) < spaced_min_letters:
        return plain
    return f"(?:{plain}|{_LETTER_GAP.join(letters)})"


def english_term_body(term: str) -> str:
    """The expression for an English lexicon term, without its word boundaries and inflections.

    Each letter also accepts its leetspeak stand-ins (``k1ll``, ``$c@m``); words are joined by one to
    three separators; each word may also be spelt out with separators between its letters (``k i l l``,
    ``k.i.l.l``), for words of two letters or more (three for a one-word term, so that ``a s`` stays
    prose). Mixed spacing inside one word (``ki ll``) is not matched: it is rare as evasion and would join
    ordinary neighbouring words.
    """
    words = term.lower().split()
    spaced_min_letters = 3 if len(words) == 1 else 2
    return _WORD_GAP.join(_english_word_regex(word, spaced_min_letters) for word in words)


# English terms match as whole words (``kill`` is not in ``skill``) with an optional inflection.
_ENGLISH_BEFORE = r"(?<![a-z0-9])"
_ENGLISH_AFTER = r"(?:s|es|ed|d|ing|ings)?(?![a-z0-9])"


def chinese_term_body(term: str) -> str:
    """The expression for a Chinese lexicon term: its characters, in order, with up to two separators
    (spaces, punctuation) between them. Chinese has no word boundaries to check."""
    return f"{SEPARATOR_CLASS}{{0,2}}".join(re.escape(c) for c in term.lower() if not c.isspace())


def _alternation(phrases: Sequence[str], english: bool, names: Sequence[str] | None = None) -> re.Pattern[str]:
    """One expression for many terms of one language, each in a named group when ``names`` are given."""
    # Terms go through the same normalisation as texts, so "殺人" or "ＫＩＬＬ" in a policy still match.
    phrases = [normalize(phrase).text for phrase in phrases]
    body = english_term_body if english else chinese_term_body
    bodies = [body(phrase) for phrase in phrases]
    groups = [f"(?P<{name}>{b})" for name, b in zip(names, bodies)] if names else bodies
    union = "(?:" + "|".join(groups) + ")"
    # Checking first "can a term start with this character?" skips most positions before the look-behind
    # and the alternatives are tried (about twice as fast); the boundary checks are shared by all terms.
    first_letters = {phrase.lower()[0] for phrase in phrases}
    first_chars = first_letters | {c for letter in first_letters for c in LEET_EQUIVALENTS.get(letter, "")} if english else first_letters
    starts = "(?=[" + "".join(re.escape(c) for c in sorted(first_chars)) + "])"
    return re.compile(f"{starts}{_ENGLISH_BEFORE}{union}{_ENGLISH_AFTER}" if english else f"{starts}{union}")


def _is_chinese(phrase: str) -> bool:
    return any(map(is_cjk, phrase))


class _CompiledCategory:
    """A category's rules compiled into expressions: one per language for the terms, one per pattern."""

    def __init__(self, category: CategoryPolicy) -> None:
        self.policy = category
        # Longer terms first so that "kill you" wins over "kill" at the same position.
        terms = sorted((rule for rule in category.rules if rule.kind != "re"), key=lambda r: len(r.text), reverse=True)
        self.terms = terms
        self.term_regexes = []
        for english in (True, False):
            indices = [i for i, rule in enumerate(terms) if (rule.kind == "en") == english]
            if indices:
                self.term_regexes.append(_alternation([terms[i].text for i in indices], english, [f"t{i}" for i in indices]))
        self.patterns = [(rule, re.compile(rule.text, re.IGNORECASE)) for rule in category.rules if rule.kind == "re"]
        self.allow_regexes = []
        for english in (True, False):
            phrases = [phrase for phrase in category.allow if _is_chinese(phrase) != english]
            if phrases:
                self.allow_regexes.append(_alternation(phrases, english))

    def find(self, normalized: NormalizedText, collapsed: NormalizedText) -> list[tuple[int, int, Rule]]:
        """Hits as ``(start, end, rule)`` in original-text offsets; ``collapsed`` is the spelt-out-joined
        view on which patterns also run (terms handle separators themselves)."""
        hits: set[tuple[int, int, Rule]] = set()
        for regex in self.term_regexes:
            for match in regex.finditer(normalized.text):
                hits.add((*normalized.original_span(*match.span()), self.terms[int(match.lastgroup[1:])]))
        for view in (normalized, collapsed) if collapsed is not normalized else (normalized,):
            for rule, pattern in self.patterns:
                for match in pattern.finditer(view.text):
                    if match.end() > match.start():
                        hits.add((*view.original_span(*match.span()), rule))
        if hits and self.allow_regexes:
            allowed = [
                normalized.original_span(*match.span())
                for regex in self.allow_regexes
                for match in regex.finditer(normalized.text)
            ]
            hits = {hit for hit in hits if not any(hit[0] < end and start < hit[1] for start, end in allowed)}
        return sorted(hits, key=lambda hit: (hit[0], hit[1], hit[2].name))


# ----------------------------------------------------------------------------------------------------------
# classifier


BENIGN_LABEL = "none"
_CLASSIFIER_FORMAT = "aigc-moderation-classifier"


@dataclass
class ClassifierConfig:
    """How :meth:`ModerationClassifier.train` builds its features and fits the regression."""

    ngram_min: int = 2  # character n-grams within word boundaries ("char_wb"), robust to spelling games
    ngram_max: int = 4
    max_features: int = 50_000
    c: float = 10.0  # inverse L2 strength; small user data sets need little regularisation to fit their terms
    max_iter: int = 1000


class ModerationClassifier:
    """TF-IDF over character n-grams + logistic regression, trained on the user's labelled examples.

    Labels are policy category names, or :data:`BENIGN_LABEL` (``"none"``) for harmless text. The fitted
    model is kept as plain arrays (vocabulary, idf, coefficients) so that :meth:`save` writes JSON and
    :meth:`load` rebuilds it without pickle (a pickle file can run code when loaded); at inference
    scikit-learn only counts n-grams over the fixed vocabulary, the rest is a few numpy lines.
    """

    def __init__(
        self,
        *,
        classes: Sequence[str],
        vocabulary: Mapping[str, int],
        idf: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        config: ClassifierConfig,
    ) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        self.classes = list(classes)
        self.vocabulary = dict(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.config = config
        # A fixed vocabulary needs no fitting: counting n-grams is all that is left to scikit-learn.
        self._counter = CountVectorizer(
            analyzer="char_wb", ngram_range=(config.ngram_min, config.ngram_max),
            vocabulary=self.vocabulary, lowercase=False, dtype=np.float64,
        )  # fmt: skip

    @property
    def categories(self) -> list[str]:
        """The labels this classifier scores (every class except the benign one)."""
        return [label for label in self.classes if label != BENIGN_LABEL]

    @classmethod
    def train(
        cls, texts: Sequence[str], labels: Sequence[str], config: ClassifierConfig | None = None
    ) -> ModerationClassifier:
        """Fit the classifier on ``texts`` labelled with category names or ``"none"``.

        Args:
            texts: example texts (normalised here the same way moderation normalises).
            labels: one label per text; at least two distinct labels.
            config: feature and regression settings.

        Returns:
            The fitted classifier.

        Raises:
            AigcError: the lists differ in length, are empty, or hold fewer than two labels.
        """
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        config = config or ClassifierConfig()
        if len(texts) != len(labels):
            raise AigcError(f"got {len(texts)} texts but {len(labels)} labels; give one label per text", param="labels")
        if len(set(labels)) < 2:
            raise AigcError(
                f"training needs at least two labels, got {sorted(set(labels))}; "
                f"label harmless examples {BENIGN_LABEL!r}",
                param="labels",
            )
        vectorizer = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(config.ngram_min, config.ngram_max), lowercase=False,
            sublinear_tf=True, max_features=config.max_features, dtype=np.float64,
        )  # fmt: skip
        features = vectorizer.fit_transform([normalize(text).text for text in texts])
        regression = LogisticRegression(C=config.c, max_iter=config.max_iter)
        regression.fit(features, list(labels))
        return cls(
            classes=[str(label) for label in regression.classes_],
            vocabulary={term: int(index) for term, index in vectorizer.vocabulary_.items()},
            idf=vectorizer.idf_, coef=regression.coef_, intercept=regression.intercept_, config=config,
        )  # fmt: skip

    def _features(self, texts: Sequence[str]):
        from sklearn.preprocessing import normalize as l2_normalize

        counts = self._counter.transform([normalize(text).text for text in texts]).tocsr()
        counts.data = 1.0 + np.log(counts.data)  # sublinear tf, as in training
        return l2_normalize(counts.multiply(self.idf).tocsr())

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(classes)), in the order of :attr:`classes`."""
        logits = self._features(texts) @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:  # binary regression keeps one row: the logit of classes[1]
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.stack([1.0 - positive, positive], axis=1)
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """For each text, the probability of every non-benign class."""
        probabilities = self.predict_proba(texts)
        columns = [(index, label) for index, label in enumerate(self.classes) if label != BENIGN_LABEL]
        return [{label: float(row[index]) for index, label in columns} for row in probabilities]

    def save(self, path: str | Path) -> Path:
        """Atomically write the classifier as one JSON file (no pickle)."""
        return atomic_write_json(
            path,
            {
                "format": _CLASSIFIER_FORMAT,
                "version": 1,
                "config": asdict(self.config),
                "classes": self.classes,
                "vocabulary": self.vocabulary,
                "idf": self.idf.tolist(),
                "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist(),
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> ModerationClassifier:
        """Rebuild a classifier written by :meth:`save`.

        Raises:
            AigcError: the file is missing, is not JSON, or is not a moderation classifier file.
        """
        path = require_file(path, "classifier file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise AigcError(f"classifier {path} is not valid JSON ({error}); write it with ModerationClassifier.save") from None
        if not isinstance(data, dict) or data.get("format") != _CLASSIFIER_FORMAT:
            raise AigcError(f"{path} is not a moderation classifier file; write it with ModerationClassifier.save")
        try:
            return cls(
                classes=data["classes"], vocabulary=data["vocabulary"], idf=np.array(data["idf"]),
                coef=np.array(data["coef"]), intercept=np.array(data["intercept"]),
                config=ClassifierConfig(**data["config"]),
            )  # fmt: skip
        except (KeyError, TypeError) as error:
            raise AigcError(f"classifier {path} is incomplete ({error}); save it again") from None


# ----------------------------------------------------------------------------------------------------------
# moderation


@dataclass(frozen=True)
class Match:
    """One hit of a rule, with ``start``/``end`` offsets into the original text (``text`` is that slice)."""

    category: str
    start: int
    end: int
    text: str
    rule: str


@dataclass(frozen=True)
class ModerationResult:
    """What :meth:`Moderator.moderate` found.

    Attributes:
        flagged: some category reached its threshold.
        blocked: a flagged category has the action ``block``.
        categories: every policy category's score in [0, 1].
        matches: the rule hits, in text order (hits of categories below threshold included: they explain
            the scores).
        action: the most severe action of the flagged categories (``allow`` when none is flagged).
        redacted_text: the text with hits of flagged ``redact`` categories masked by ``*``.
        flagged_categories: the names of the categories that reached their threshold.
    """

    flagged: bool
    blocked: bool
    categories: dict[str, float]
    matches: list[Match]
    action: str
    redacted_text: str
    flagged_categories: tuple[str, ...] = field(default=())


def _probabilistic_sum(weights: Iterable[float]) -> float:
    remaining = 1.0
    for weight in weights:
        remaining *= 1.0 - weight
    return 1.0 - remaining


class Moderator:
    """Moderates text under one policy, optionally helped by a trained classifier.

    Args:
        policy: the categories to check.
        classifier: optional :class:`ModerationClassifier`; each of its labels must be a policy category.

    Raises:
        AigcError: the classifier scores a label that the policy does not define.
    """

    def __init__(self, policy: Policy, classifier: ModerationClassifier | None = None) -> None:
        if classifier is not None:
            for label in classifier.categories:
                if label not in policy.names:
                    raise AigcError(
                        f"classifier label {label!r} is not a category of policy {policy.source}; "
                        f"use one of: {', '.join(policy.names)}, or {BENIGN_LABEL!r} for harmless examples"
                    )
        self.policy = policy
        self.classifier = classifier
        self._compiled = [_CompiledCategory(category) for category in policy.categories]

    @classmethod
    def from_policy(
        cls, path: str | Path | None = None, classifier: ModerationClassifier | str | Path | None = None
    ) -> Moderator:
        """A moderator for the policy file at ``path`` (the bundled default when None).

        Args:
            path: a policy TOML file.
            classifier: a :class:`ModerationClassifier` or the path of one saved with ``save``.
        """
        if isinstance(classifier, (str, Path)):
            classifier = ModerationClassifier.load(classifier)
        return cls(load_policy(path), classifier)

    def moderate(self, text: str) -> ModerationResult:
        """Score ``text`` in every category and decide the action.

        Args:
            text: the text to check.

        Returns:
            The :class:`ModerationResult`; offsets in its matches refer to ``text``.
        """
        return self.moderate_batch([text])[0]

    def moderate_batch(self, texts: Sequence[str]) -> list[ModerationResult]:
        """:meth:`moderate` for many texts; the classifier, if any, runs once on the whole batch."""
        classifier_scores = self.classifier.scores(texts) if self.classifier is not None and texts else None
        results = []
        for index, text in enumerate(texts):
            normalized = normalize(text)
            results.append(self._moderate_one(normalized, classifier_scores[index] if classifier_scores else {}))
        return results

    def _moderate_one(self, normalized: NormalizedText, classifier_scores: Mapping[str, float]) -> ModerationResult:
        text = normalized.original
        collapsed = collapse_spelled_out(normalized)
        matches: list[Match] = []
        scores: dict[str, float] = {}
        for compiled in self._compiled:
            name = compiled.policy.name
            weight_per_rule: dict[str, float] = {}
            for start, end, rule in compiled.find(normalized, collapsed):
                matches.append(Match(name, start, end, text[start:end], rule.name))
                weight_per_rule[rule.name] = rule.weight
            lexicon_score = _probabilistic_sum(weight_per_rule.values())
            scores[name] = round(_probabilistic_sum([lexicon_score, classifier_scores.get(name, 0.0)]), 4)

        flagged = tuple(c.name for c in self.policy.categories if scores[c.name] >= c.threshold)
        actions = {self.policy.category(name).action for name in flagged}
        action = max(actions, key=ACTIONS.index) if actions else "allow"
        redact_categories = {name for name in flagged if self.policy.category(name).action == "redact"}
        redacted = list(text)
        for match in matches:
            if match.category in redact_categories:
                redacted[match.start : match.end] = "*" * (match.end - match.start)
        matches.sort(key=lambda match: (match.start, match.end, match.category))
        return ModerationResult(
            flagged=bool(flagged), blocked="block" in actions, categories=scores, matches=matches,
            action=action, redacted_text="".join(redacted), flagged_categories=flagged,
        )  # fmt: skip


def to_openai(result: ModerationResult) -> dict[str, Any]:
    """One entry of an OpenAI ``/v1/moderations`` response's ``results`` list.

    Returns:
        ``{"flagged": bool, "categories": {name: bool}, "category_scores": {name: float}}`` with the
        policy's category names (the default policy uses OpenAI's names where one exists).
    """
    flagged = set(result.flagged_categories)
    return {
        "flagged": result.flagged,
        "categories": {name: name in flagged for name in result.categories},
        "category_scores": dict(result.categories),
    }


# ----------------------------------------------------------------------------------------------------------
# files and evaluation


@dataclass(frozen=True)
class ModerationFileReport:
    """Counts from :func:`moderate_jsonl`."""

    rows: int
    flagged: int
    blocked: int
    output: Path


def moderate_jsonl(input_path: str | Path, output_path: str | Path, moderator: Moderator) -> ModerationFileReport:
    """Moderate every ``{"id", "text"}`` line of a JSON Lines file and write the lines back with the verdict.

    Each output line is the input object plus ``"flagged"``, ``"blocked"``, ``"action"``, ``"categories"``
    (scores) and ``"matches"`` (``{"category", "start", "end", "text", "rule"}``). The output is written
    atomically.

    Raises:
        AigcError: the input is missing or malformed, or a line has no string ``"text"`` (with its line number).
    """
    line_numbers, rows = [], []
    for line_number, row in read_jsonl(input_path):
        if not isinstance(row.get("text"), str):
            raise AigcError(
                f'{input_path}:{line_number}: no string field "text"; each line must look like {{"id": 1, "text": "..."}}'
            )
        line_numbers.append(line_number)
        rows.append(row)
    results = moderator.moderate_batch([row["text"] for row in rows])
    output_rows = [
        {
            **row,
            "flagged": result.flagged,
            "blocked": result.blocked,
            "action": result.action,
            "categories": result.categories,
            "matches": [asdict(match) for match in result.matches],
        }
        for row, result in zip(rows, results)
    ]
    output = write_jsonl(output_path, output_rows)
    return ModerationFileReport(
        rows=len(rows), flagged=sum(r.flagged for r in results), blocked=sum(r.blocked for r in results), output=output
    )


@dataclass(frozen=True)
class DetectionScore:
    """Detection counts and rates for one category (or one personal-data type)."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 1.0

    @property
    def recall(self) -> float:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else 1.0


def evaluate(moderator: Moderator, examples: Iterable[tuple[str, Iterable[str]]]) -> dict[str, DetectionScore]:
    """Per-category precision and recall of ``moderator`` on labelled texts.

    Args:
        moderator: the moderator to measure.
        examples: ``(text, categories that should be flagged)`` pairs; an empty set marks harmless text.

    Returns:
        ``{category: DetectionScore}`` for every policy category, counted per text.
    """
    examples = [(text, set(expected)) for text, expected in examples]
    results = moderator.moderate_batch([text for text, _ in examples])
    counts = {name: [0, 0, 0] for name in moderator.policy.names}
    for (_, expected), result in zip(examples, results):
        predicted = set(result.flagged_categories)
        for name in counts:
            counts[name][0] += name in predicted and name in expected
            counts[name][1] += name in predicted and name not in expected
            counts[name][2] += name not in predicted and name in expected
    return {name: DetectionScore(*values) for name, values in counts.items()}
