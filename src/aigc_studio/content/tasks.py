"""Content tasks: ad copy, product description, social post, blog draft and email subject.

A task knows how to ask for its content and what counts as acceptable content:

* two renderings of a request (DESIGN "Tasks know two renderings"): a compact **source** string for builtin
  conditional models trained on that format (the E2E meaning representation ``name[The Eagle], food[French]``
  or AdvertiseGen's ``类型#裤*风格#简约``), and an **instruction prompt** for large pretrained backends that
  states the facts, audience, tone, keywords, forbidden words, length, platform limits and output format;
* its **hard constraints** (:meth:`Task.check`): required keywords present, forbidden words absent, not over
  the length limit, slots rendered faithfully, and the task's own format rules; the pipeline ranks violators
  last and flags them;
* its **metric weights**, which the judge (:mod:`aigc_studio.evaluation.judge`) uses to rank candidates;
  docs/content.md has the table.

Length is counted in :func:`~aigc_studio.evaluation.text.tokenize` tokens: words in English, characters in
Chinese.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from aigc_studio.content.attributes import MULTI_VALUE_SEPARATOR, format_mr
from aigc_studio.content.requests import ContentRequest
from aigc_studio.errors import AigcError
from aigc_studio.evaluation.constraints import text_length
from aigc_studio.evaluation.fidelity import slot_errors
from aigc_studio.evaluation.text import count_term, has_cjk

# A target length is met within a quarter either way: briefs give a round number, editors accept about that.
LENGTH_TOLERANCE = 0.25
# The bundled English data-to-text model (trained on E2E) that ad copy and product descriptions use by default.
DEFAULT_ENGLISH_MODEL = "e2e-copy"

ViolationKind = Literal["missing_keyword", "forbidden_word", "too_long", "slot_error", "format"]
SlotFidelity = Literal["all", "no_contradictions"]


@dataclass(frozen=True)
class ConstraintViolation:
    """One hard constraint a candidate breaks.

    Attributes:
        kind: ``missing_keyword``, ``forbidden_word``, ``too_long``, ``slot_error`` or ``format``.
        message: what is wrong, e.g. ``"forbidden word 'cheap' x1"``.
    """

    kind: ViolationKind
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class TaskText:
    """The wording a task's instruction prompt uses in one language.

    Attributes:
        deliverable: what to write, as the object of "Write ..." (``"a short advertising copy"``).
        short_name: how the reply is referred to (``"ad copy"``).
        output_format: the format paragraph.
    """

    deliverable: str
    short_name: str
    output_format: str


@dataclass(frozen=True)
class Platform:
    """A social network's limits as its help pages published them (2024).

    Attributes:
        name: the ``--platform`` value.
        display: the name used in prompts.
        max_chars: most characters in a post, hashtags included.
        hashtags: how many hashtags a post should carry (the platform's own advice where it gives one).
        hashtag_style: ``"prefix"`` (``#Tag``) or ``"weibo"`` (``#话题#``, closed on both sides).
        cjk_counts_double: X weighs each Chinese/Japanese character as two towards its limit.
    """

    name: str
    display: str
    max_chars: int
    hashtags: int
    hashtag_style: Literal["prefix", "weibo"] = "prefix"
    cjk_counts_double: bool = False

    def count_chars(self, text: str) -> int:
        """Characters as the platform counts them towards :attr:`max_chars`."""
        if not self.cjk_counts_double:
            return len(text)
        return sum(2 if has_cjk(char) else 1 for char in text)

    def hashtag(self, term: str) -> str:
        """``"fast food"`` as a hashtag: ``#FastFood``, or ``#fast food#`` on Weibo (topics may hold spaces)."""
        if self.hashtag_style == "weibo":
            return f"#{term.strip()}#"
        return "#" + "".join(part[:1].upper() + part[1:] for part in re.findall(r"\w+", term))


PLATFORMS: dict[str, Platform] = {
    platform.name: platform
    for platform in (
        Platform("x", "X (Twitter)", max_chars=280, hashtags=2, cjk_counts_double=True),
        Platform("instagram", "Instagram", max_chars=2200, hashtags=5),
        Platform("linkedin", "LinkedIn", max_chars=3000, hashtags=3),
        Platform("facebook", "Facebook", max_chars=63206, hashtags=2),
        Platform("weibo", "Weibo (微博)", max_chars=2000, hashtags=2, hashtag_style="weibo"),
        Platform("xiaohongshu", "Xiaohongshu (小红书)", max_chars=1000, hashtags=5),
    )
}
DEFAULT_PLATFORMS: dict[str, str] = {"en": "x", "zh": "weibo"}

_HASHTAG = re.compile(r"#\w")
_LENGTH_UNITS = {"en": "words", "zh": "characters"}


def target_length_range(length: int) -> tuple[int, int]:
    """The accepted ``(min, max)`` length around a target: :data:`LENGTH_TOLERANCE` either way, at least 1."""
    return max(1, math.floor(length * (1 - LENGTH_TOLERANCE))), max(1, math.ceil(length * (1 + LENGTH_TOLERANCE)))


def advertisegen_source(attributes: Mapping[str, str]) -> str:
    """Render attributes in AdvertiseGen's form, ``类型#裤*风格#复古*风格#简约`` (joined values repeat the key).

    Raises:
        AigcError: a key holds ``#`` or ``*``, or a value holds ``*``: the form could not be read back.
    """
    pairs = []
    for key, joined in attributes.items():
        if "#" in key or "*" in key:
            raise AigcError(f"attribute key {key!r} contains '#' or '*'; the AdvertiseGen form cannot hold it, rename the key",
                            param="attributes")
        for value in joined.split(MULTI_VALUE_SEPARATOR):
            if "*" in value:
                raise AigcError(f"value {value!r} of {key!r} contains '*'; the AdvertiseGen form cannot hold it, remove it",
                                param="attributes")
            pairs.append(f"{key}#{value}")
    return "*".join(pairs)


def _quoted(terms: tuple[str, ...], language: str) -> str:
    if language == "zh":
        return "、".join(f"“{term}”" for term in terms)
    return ", ".join(f'"{term}"' for term in terms)


@dataclass(frozen=True)
class Task:
    """A kind of content: its renderings, its default length, its hard constraints and its metric weights.

    Attributes:
        name: the registry key (``"ad-copy"``).
        description: one line for ``--help`` and the docs.
        texts: the prompt wording per language.
        default_lengths: ``(min, max)`` length per language when the request gives no target.
        metric_weights: metric name → weight for the judge (metrics that do not apply are skipped).
        slot_fidelity: ``"all"``: a missing or contradicted slot breaks the constraint; ``"no_contradictions"``:
            only a contradicted one does (for content too short to carry every fact).
        default_models: language → bundled model used when no model is given.
    """

    name: str
    description: str
    texts: Mapping[str, TaskText]
    default_lengths: Mapping[str, tuple[int, int]]
    metric_weights: Mapping[str, float]
    slot_fidelity: SlotFidelity = "all"
    default_models: Mapping[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ requests
    def validate(self, request: ContentRequest) -> None:
        """Check what only the task can check about a request.

        Raises:
            AigcError: a platform given to a task other than ``social-post``.
        """
        if request.platform is not None:
            raise AigcError(f"--platform applies to social-post only, not {self.name}; leave it out", param="platform")

    def length_range(self, request: ContentRequest) -> tuple[int, int]:
        """``(min, max)`` length in words (characters for Chinese): around the target, else the task default."""
        if request.length is not None:
            return target_length_range(request.length)
        return self.default_lengths[request.language]

    # ------------------------------------------------------------------ renderings
    def render_source(self, request: ContentRequest) -> str:
        """The compact source for builtin conditional models: the E2E MR or AdvertiseGen's form.

        Only the attributes fit this form; keywords, tone and length are enforced by ranking instead.

        Raises:
            AigcError: an attribute the chosen form cannot hold.
        """
        if request.resolved_source_format == "advertisegen":
            return advertisegen_source(request.attributes)
        return format_mr(request.attributes)

    def render_prompt(self, request: ContentRequest) -> str:
        """The instruction prompt for large pretrained backends, in the request's language."""
        text = self.texts[request.language]
        low, high = self.length_range(request)
        lines = _PROMPT_LINES[request.language]
        facts = "\n".join(f"- {key}{lines['colon']}{value}" for key, value in request.attributes.items())
        parts = [lines["role"].format(deliverable=text.deliverable), "", lines["facts"], facts]
        if request.audience:
            parts.append(lines["audience"].format(audience=request.audience))
        if request.tone:
            parts.append(lines["tone"].format(tone=request.tone))
        if request.keywords:
            parts.append(lines["keywords"].format(terms=_quoted(request.keywords, request.language)))
        if request.forbidden_words:
            parts.append(lines["forbidden"].format(terms=_quoted(request.forbidden_words, request.language)))
        parts.append(lines["length"].format(low=low, high=high))
        parts.extend(self.extra_instructions(request))
        parts.append(lines["format"].format(output_format=text.output_format))
        parts.append(lines["reply"].format(short_name=text.short_name))
        return "\n".join(parts)

    def extra_instructions(self, request: ContentRequest) -> list[str]:
        """Task-specific prompt lines placed before the format line (none by default)."""
        return []

    def finalize(self, text: str, request: ContentRequest) -> str:
        """Turn a generated text into the deliverable (stripped; tasks may add to it)."""
        return text.strip()

    # ------------------------------------------------------------------ constraints
    def check(self, text: str, request: ContentRequest) -> list[ConstraintViolation]:
        """Every hard constraint ``text`` breaks: keywords, forbidden words, length limit, slots, format.

        Args:
            text: a finalised candidate.
            request: the request it was written for.

        Returns:
            The violations in that order; empty when the candidate is acceptable.
        """
        violations = []
        if not text.strip():
            violations.append(ConstraintViolation("format", "the text is empty"))
        for keyword in request.keywords:
            if count_term(text, keyword) == 0:
                violations.append(ConstraintViolation("missing_keyword", f"missing keyword {keyword!r}"))
        for word in request.forbidden_words:
            hits = count_term(text, word)
            if hits:
                violations.append(ConstraintViolation("forbidden_word", f"forbidden word {word!r} x{hits}"))
        length, (_, max_length) = text_length(text), self.length_range(request)
        if length > max_length:
            unit = _LENGTH_UNITS[request.language]
            violations.append(ConstraintViolation("too_long", f"{length} {unit}, over the limit of {max_length}"))
        for error in slot_errors(text, request.attributes):
            if self.slot_fidelity == "all" or error.kind == "contradicted":
                violations.append(ConstraintViolation("slot_error", f"{error.kind} {error.slot}[{error.value}]"))
        violations.extend(self.format_violations(text, request))
        return violations

    def format_violations(self, text: str, request: ContentRequest) -> list[ConstraintViolation]:
        """The task's own format rules (none by default)."""
        return []

    def default_model(self, language: str) -> str:
        """The bundled model used when the user names none.

        Raises:
            AigcError: the task has no bundled model for this language.
        """
        if language not in self.default_models:
            raise AigcError(
                f"{self.name} has no bundled default model for language {language!r}; "
                "pass --model with a model directory written by `aigc train`",
                param="model",
            )
        return self.default_models[language]


@dataclass(frozen=True)
class SocialPostTask(Task):
    """A post for one platform: its character limit is a hard constraint and the post ends with hashtags."""

    def platform_for(self, request: ContentRequest) -> Platform:
        """The request's platform, or the language's default (X for English, Weibo for Chinese).

        Raises:
            AigcError: an unknown platform; the message lists the known ones.
        """
        name = request.platform or DEFAULT_PLATFORMS[request.language]
        if name.lower() not in PLATFORMS:
            raise AigcError(f"unknown platform {name!r}; choose one of: {', '.join(PLATFORMS)}", param="platform")
        return PLATFORMS[name.lower()]

    def validate(self, request: ContentRequest) -> None:
        self.platform_for(request)

    def extra_instructions(self, request: ContentRequest) -> list[str]:
        platform = self.platform_for(request)
        example = " ".join(platform.hashtag(term) for term in _PROMPT_LINES[request.language]["hashtag_examples"])
        return [_PROMPT_LINES[request.language]["platform"].format(
            display=platform.display, max_chars=platform.max_chars, hashtags=platform.hashtags, example=example,
        )]

    def finalize(self, text: str, request: ContentRequest) -> str:
        """Append hashtags (the keywords, then the ``name`` attribute) that fit the limit, unless the text has some.

        Builtin models trained on descriptions never write hashtags; instruction-following models are asked
        to, and their own hashtags are kept.
        """
        text = text.strip()
        if _HASHTAG.search(text):
            return text
        platform = self.platform_for(request)
        names = [value for key, value in request.attributes.items() if key.lower() == "name"]
        tags: list[str] = []
        for term in (*request.keywords, *names):
            tag = platform.hashtag(term)
            if len(tag) > 1 and tag not in tags and len(tags) < platform.hashtags:
                if platform.count_chars(" ".join([text, *tags, tag])) <= platform.max_chars:
                    tags.append(tag)
        return " ".join([text, *tags]) if tags else text

    def format_violations(self, text: str, request: ContentRequest) -> list[ConstraintViolation]:
        platform = self.platform_for(request)
        chars = platform.count_chars(text)
        if chars > platform.max_chars:
            return [ConstraintViolation("too_long", f"{chars} characters, over {platform.display}'s limit of {platform.max_chars}")]
        return []


_TITLE_LINE = re.compile(r"^#\s+\S", re.MULTILINE)
_SECTION_LINE = re.compile(r"^##\s+\S", re.MULTILINE)


@dataclass(frozen=True)
class BlogDraftTask(Task):
    """A Markdown draft: a ``#`` title, an outline and ``##`` sections."""

    def format_violations(self, text: str, request: ContentRequest) -> list[ConstraintViolation]:
        # Two "##" headings at the least: the outline and one section.
        if _TITLE_LINE.search(text) is None or len(_SECTION_LINE.findall(text)) < 2:
            return [ConstraintViolation("format", "not a blog draft: needs a '# Title' line, '## Outline' and '## ' sections")]
        return []


@dataclass(frozen=True)
class EmailSubjectTask(Task):
    """One subject line."""

    def format_violations(self, text: str, request: ContentRequest) -> list[ConstraintViolation]:
        if "\n" in text.strip():
            return [ConstraintViolation("format", "a subject must be one line")]
        return []


_PROMPT_LINES: dict[str, dict] = {
    "en": {
        "role": "You are a senior marketing copywriter. Write {deliverable} in English.",
        "facts": "Facts (use every one accurately and invent no others):",
        "colon": ": ",
        "audience": "Audience: {audience}.",
        "tone": "Tone: {tone}.",
        "keywords": "Must include, word for word: {terms}.",
        "forbidden": "Must not include: {terms}.",
        "length": "Length: {low} to {high} words.",
        "platform": ("Platform: {display}. At most {max_chars} characters in total, hashtags included. "
                     "End with {hashtags} relevant hashtags written like {example}."),
        "hashtag_examples": ("riverside dining", "family friendly"),
        "format": "Format: {output_format}",
        "reply": "Reply with the {short_name} only: no preface, no notes, no quotation marks around it.",
    },
    "zh": {
        "role": "你是一名资深营销文案。请用简体中文写{deliverable}。",
        "facts": "事实（每一条都要准确写到，不要编造其他信息）：",
        "colon": "：",
        "audience": "受众：{audience}。",
        "tone": "语气：{tone}。",
        "keywords": "必须原样包含：{terms}。",
        "forbidden": "不得出现：{terms}。",
        "length": "长度：{low}到{high}个字。",
        "platform": "平台：{display}。全文（含话题标签）不超过{max_chars}个字符。结尾加{hashtags}个相关话题标签，格式如 {example}。",
        "hashtag_examples": ("秋冬穿搭", "简约风"),
        "format": "格式：{output_format}",
        "reply": "只输出{short_name}本身，不要前言、说明，也不要加引号。",
    },
}

_SHORT_COPY_WEIGHTS = {
    "slot_error_rate": 3.0, "forbidden_word_hits": 3.0, "keyword_coverage": 2.0, "length_compliance": 1.0,
    "perplexity": 1.0, "copied_ngram_share": 1.0, "flesch_reading_ease": 0.5, "zh_sentence_length": 0.5,
    "zh_common_char_share": 0.5,
}

_ALL_TASKS: tuple[Task, ...] = (
    Task(
        name="ad-copy",
        description="short advertising copy from product or venue attributes",
        texts={
            "en": TaskText("a short advertising copy", "ad copy",
                           "one or two punchy sentences of plain text; no hashtags, no emojis, no headings."),
            "zh": TaskText("一段简短的广告文案", "广告文案", "一到三句纯文本，不要话题标签、表情符号或标题。"),
        },
        default_lengths={"en": (10, 40), "zh": (40, 150)},
        metric_weights=_SHORT_COPY_WEIGHTS,
        default_models={"en": DEFAULT_ENGLISH_MODEL},
    ),
    Task(
        name="product-description",
        description="a product description covering every attribute",
        texts={
            "en": TaskText("a product description", "description",
                           "one paragraph of plain prose that covers every fact; no headings, no bullet points."),
            "zh": TaskText("一段产品描述", "产品描述", "一段通顺的文字，写到每一条事实；不要标题，不要列表。"),
        },
        default_lengths={"en": (30, 90), "zh": (80, 250)},
        metric_weights=_SHORT_COPY_WEIGHTS,
        default_models={"en": DEFAULT_ENGLISH_MODEL},
    ),
    SocialPostTask(
        name="social-post",
        description="a social media post within the platform's limit, ending with hashtags",
        texts={
            "en": TaskText("a social media post", "post", "plain text, then the hashtags on the same line; no links."),
            "zh": TaskText("一条社交媒体帖子", "帖子", "纯文本，结尾接话题标签；不要链接。"),
        },
        default_lengths={"en": (10, 50), "zh": (30, 140)},
        metric_weights={
            "slot_error_rate": 2.0, "forbidden_word_hits": 3.0, "keyword_coverage": 2.0, "length_compliance": 2.0,
            "perplexity": 1.0, "copied_ngram_share": 1.0, "flesch_reading_ease": 1.0, "zh_sentence_length": 1.0,
            "zh_common_char_share": 1.0,
        },
    ),
    BlogDraftTask(
        name="blog-draft",
        description="a Markdown blog draft: title, outline and sections",
        texts={
            "en": TaskText(
                "a blog post draft", "draft",
                "Markdown. First line '# ' and the title; then '## Outline' with 3 to 5 bullet points; then one "
                "'## ' section per outline point, each one to three short paragraphs.",
            ),
            "zh": TaskText(
                "一篇博客文章草稿", "草稿",
                "Markdown。第一行是“# ”加标题；接着“## 大纲”，列出3到5个要点；然后每个要点一节，以“## ”开头，每节一到三段。",
            ),
        },
        default_lengths={"en": (300, 800), "zh": (600, 1500)},
        metric_weights={
            "slot_error_rate": 2.0, "forbidden_word_hits": 3.0, "keyword_coverage": 2.0, "length_compliance": 1.0,
            "perplexity": 1.0, "copied_ngram_share": 1.0, "flesch_reading_ease": 1.0, "zh_sentence_length": 0.5,
            "zh_common_char_share": 0.5,
        },
    ),
    EmailSubjectTask(
        name="email-subject",
        description="a marketing email subject line",
        texts={
            "en": TaskText("a marketing email subject line", "subject line",
                           "one line; no 'Subject:' prefix, no quotation marks, no full stop at the end."),
            "zh": TaskText("一封营销邮件的主题", "邮件主题", "一行；不要“主题：”前缀，不要引号，结尾不加句号。"),
        },
        default_lengths={"en": (3, 9), "zh": (6, 20)},
        metric_weights={
            "slot_error_rate": 1.0, "forbidden_word_hits": 3.0, "keyword_coverage": 2.0, "length_compliance": 2.0,
            "perplexity": 1.0, "copied_ngram_share": 0.5, "flesch_reading_ease": 0.5, "zh_common_char_share": 0.5,
        },
        # A subject line cannot carry every fact; only stating one wrongly is unacceptable.
        slot_fidelity="no_contradictions",
    ),
)

TASKS: dict[str, Task] = {task.name: task for task in _ALL_TASKS}


def get_task(name: str) -> Task:
    """The task called ``name``.

    Raises:
        AigcError: no such task; the message lists the tasks (``param="task"``).
    """
    if name not in TASKS:
        raise AigcError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}", param="task")
    return TASKS[name]
