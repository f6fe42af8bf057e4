"""A content request: what to write about (attributes) and the brief around it, parsed and checked once.

Every entry point (``aigc write`` flags, a JSON Lines batch, later the HTTP API) builds a
:class:`ContentRequest` through :func:`make_request` or :func:`request_from_json`, so the rules for
attributes, keywords, language and counts live in one place and every mistake is one clear
:class:`~aigc_studio.errors.AigcError` naming the parameter.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aigc_studio.content.attributes import parse_attributes
from aigc_studio.errors import AigcError
from aigc_studio.evaluation.text import has_cjk, normalize

Language = Literal["en", "zh"]
LANGUAGES: tuple[str, ...] = ("en", "zh")
# How the compact source is written for builtin conditional models: "e2e" is the E2E meaning representation
# (name[The Eagle], food[French]), "advertisegen" AdvertiseGen's key#value*key#value; "auto" picks by language.
SourceFormat = Literal["auto", "e2e", "advertisegen"]
SOURCE_FORMATS: tuple[str, ...] = ("auto", "e2e", "advertisegen")

# JSON Lines fields that are a request, with the CLI flag each mirrors (the key is the flag's name).
REQUEST_FIELDS: tuple[str, ...] = (
    "attributes", "audience", "tone", "keywords", "forbid", "language", "length", "n", "platform", "source_format",
)
# Fields a batch line may carry that are not part of the request: they are copied to the output line.
PASSTHROUGH_FIELDS: tuple[str, ...] = ("id", "references")

# Terms are separated by ASCII or full-width commas, so Chinese keyword lists need no switch of keyboard.
_TERM_SEPARATOR = re.compile(r"[,，]")


@dataclass(frozen=True)
class ContentRequest:
    """One piece of content to write, and the constraints it must meet.

    Attributes:
        task: the task name (``ad-copy``, ``product-description``, ``social-post``, ``blog-draft``,
            ``email-subject``); see :mod:`aigc_studio.content.tasks`.
        attributes: the facts to write from, in order (``{"name": "The Eagle", "food": "French"}``).
        audience: who the content is for (``"families with young children"``), or None.
        tone: how it should sound (``"playful"``), or None.
        keywords: terms that must appear.
        forbidden_words: terms that must not appear.
        language: ``"en"`` or ``"zh"``; length is counted in words for English, characters for Chinese.
        length: target length in those units, or None for the task's default range.
        n: how many candidates to generate and rank.
        platform: the social network of a ``social-post`` (``x``, ``instagram``, ...), or None for the
            language's default.
        source_format: how attributes are written for builtin conditional models (see :data:`SourceFormat`).
    """

    task: str
    attributes: dict[str, str]
    audience: str | None = None
    tone: str | None = None
    keywords: tuple[str, ...] = ()
    forbidden_words: tuple[str, ...] = ()
    language: Language = "en"
    length: int | None = None
    n: int = 5
    platform: str | None = None
    source_format: SourceFormat = "auto"

    @property
    def resolved_source_format(self) -> str:
        """``"e2e"`` or ``"advertisegen"``: the explicit choice, else AdvertiseGen for Chinese and E2E otherwise."""
        if self.source_format != "auto":
            return self.source_format
        return "advertisegen" if self.language == "zh" else "e2e"

    def to_dict(self) -> dict[str, Any]:
        """The request as JSON-ready data (lists instead of tuples)."""
        data = dataclasses.asdict(self)
        data["keywords"] = list(self.keywords)
        data["forbidden_words"] = list(self.forbidden_words)
        return data


def parse_terms(value: str | Sequence[str] | None, param: str) -> tuple[str, ...]:
    """Read a list of terms given as a comma-separated string (``"pub, riverside"``) or a list of strings.

    Args:
        value: the terms; None means none.
        param: the parameter name for messages (``"keywords"`` or ``"forbid"``).

    Returns:
        The stripped terms in order, each once.

    Raises:
        AigcError: an empty string, an empty term (``"pub,,cheap"``), or something that is not text.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        if not value.strip():
            raise AigcError(
                f"{param} is empty; give comma-separated terms such as 'pub, riverside' or leave {param} out", param=param
            )
        items: Sequence[Any] = _TERM_SEPARATOR.split(value)
    elif isinstance(value, Sequence):
        items = value
    else:
        raise AigcError(f"{param} must be a list of terms or a comma-separated string, got {type(value).__name__}", param=param)
    terms: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise AigcError(f"{param} must hold text, got {item!r}", param=param)
        if not item.strip():
            raise AigcError(f"{param} contains an empty term; remove the extra comma or the empty entry", param=param)
        if item.strip() not in terms:
            terms.append(item.strip())
    return tuple(terms)


def _optional_text(value: Any, param: str, example: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise AigcError(f"{param} must be text, got {type(value).__name__}", param=param)
    if not value.strip():
        raise AigcError(f"{param} is empty; give one such as {example!r} or leave {param} out", param=param)
    return value.strip()


def _positive_int(value: Any, param: str) -> int:
    # bool is an int subclass, but "n": true is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise AigcError(f"{param} must be a whole number >= 1, got {value!r}", param=param)
    if value < 1:
        raise AigcError(f"{param}={value} is out of range; it must be at least 1", param=param)
    return value


def _infer_language(attributes: Mapping[str, str]) -> str:
    return "zh" if any(has_cjk(key) or has_cjk(value) for key, value in attributes.items()) else "en"


def make_request(
    task: str,
    *,
    attributes: str | Mapping[str, Any] | None,
    audience: str | None = None,
    tone: str | None = None,
    keywords: str | Sequence[str] | None = None,
    forbid: str | Sequence[str] | None = None,
    language: str | None = None,
    length: int | None = None,
    n: int = 5,
    platform: str | None = None,
    source_format: str = "auto",
) -> ContentRequest:
    """Parse and check the parts of a request into a :class:`ContentRequest`.

    Args:
        task: the task name (checked against the task registry by :func:`~aigc_studio.content.tasks.get_task`).
        attributes: any form :func:`~aigc_studio.content.attributes.parse_attributes` accepts.
        audience: who the content is for.
        tone: how it should sound.
        keywords: required terms, comma-separated or a list.
        forbid: forbidden terms, comma-separated or a list.
        language: ``"en"`` or ``"zh"``; None infers it from the attributes (Chinese characters mean ``"zh"``).
        length: target length in words (characters for Chinese).
        n: candidates to generate.
        platform: a ``social-post``'s network.
        source_format: ``auto``, ``e2e`` or ``advertisegen``.

    Returns:
        The checked request.

    Raises:
        AigcError: missing or malformed attributes, an empty keyword list or term, a term both required and
            forbidden, an unknown language or source format, or ``length``/``n`` below 1; ``param`` names the field.
    """
    if attributes is None:
        raise AigcError("attributes are required; pass them like 'name[The Eagle], food[French]' or 'name=The Eagle'",
                        param="attributes")
    parsed = parse_attributes(attributes)
    required = parse_terms(keywords, "keywords")
    forbidden = parse_terms(forbid, "forbid")
    clashes = [term for term in required if normalize(term) in {normalize(word) for word in forbidden}]
    if clashes:
        raise AigcError(f"{clashes[0]!r} is both a keyword and forbidden; remove it from one of them", param="forbid")
    language = _infer_language(parsed) if language is None else language
    if language not in LANGUAGES:
        raise AigcError(f"unknown language {language!r}; use one of: {', '.join(LANGUAGES)}", param="language")
    if source_format not in SOURCE_FORMATS:
        raise AigcError(f"unknown source format {source_format!r}; use one of: {', '.join(SOURCE_FORMATS)}",
                        param="source_format")
    return ContentRequest(
        task=task,
        attributes=parsed,
        audience=_optional_text(audience, "audience", "families with young children"),
        tone=_optional_text(tone, "tone", "playful"),
        keywords=required,
        forbidden_words=forbidden,
        language=language,  # type: ignore[arg-type]  # checked against LANGUAGES above
        length=None if length is None else _positive_int(length, "length"),
        n=_positive_int(n, "n"),
        platform=_optional_text(platform, "platform", "instagram"),
        source_format=source_format,  # type: ignore[arg-type]  # checked against SOURCE_FORMATS above
    )


def request_from_json(task: str, line: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> ContentRequest:
    """Build a request from one JSON Lines object, over ``defaults`` (the command-line flags).

    Args:
        task: the task name.
        line: ``{"id": ..., "attributes": ..., "keywords": [...], ...}``; keys are :data:`REQUEST_FIELDS`
            plus :data:`PASSTHROUGH_FIELDS`.
        defaults: values for fields the line leaves out (None values are ignored).

    Returns:
        The checked request.

    Raises:
        AigcError: an unknown key (listing the accepted ones) or any error of :func:`make_request`.
    """
    unknown = [key for key in line if key not in REQUEST_FIELDS and key not in PASSTHROUGH_FIELDS]
    if unknown:
        raise AigcError(
            f"unknown field {unknown[0]!r}; a line may hold: {', '.join(REQUEST_FIELDS + PASSTHROUGH_FIELDS)}",
            param=unknown[0],
        )
    fields = {key: value for key, value in (defaults or {}).items() if value is not None}
    fields.update({key: value for key, value in line.items() if key in REQUEST_FIELDS})
    return make_request(task, **fields)
