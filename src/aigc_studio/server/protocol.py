"""Every request and response body of the HTTP API, as pydantic models with OpenAI's field names.

The OpenAI-compatible schemas (completions, chat completions, models, moderations) list their fields in the
order of OpenAI's API reference, then a marked block of extensions (``top_k``, ``num_beams``, ...). They ignore
fields they do not know, as OpenAI's own clients expect of a compatible server (the ignored names are logged);
our own endpoints (content, library, evaluate, watermark, provenance) reject unknown fields so a typo is a 422
naming it.

HTTP schemas never reach the engine: :meth:`CompletionRequest.to_sampling_params` and
:meth:`ChatCompletionRequest.to_sampling_params` turn a request into the engine's
:class:`~aigc_studio.generation.sampling_params.SamplingParams` over the model's defaults, and the caps of
the server settings (``max_tokens_cap``, ``max_n``) are checked there, naming the parameter.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import MAX_TOP_LOGPROBS, SamplingParams
from aigc_studio.settings import ServerSettings

logger = logging.getLogger("aigc_studio.server")

# Seeds are stored with each audit record as a signed 64-bit integer (SQLite INTEGER, PostgreSQL BIGINT).
MAX_SEED = 2**63 - 1
# Below vLLM's sampling epsilon a temperature is greedy decoding; dividing logits by it would overflow.
SAMPLING_EPS = 1e-5
# A penalty this far from 1 already makes a repeat impossible (or certain); beyond it the logits overflow.
MIN_REPETITION_PENALTY = 0.01


class OpenAIBaseModel(BaseModel):
    """Base of the OpenAI-compatible schemas: unknown fields are ignored (and logged), not refused."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_ignored_fields(self) -> OpenAIBaseModel:
        if self.model_extra:
            # repr and truncation: field names come from the client and must not forge log lines.
            names = ", ".join(repr(name)[:40] for name in sorted(self.model_extra)[:10])
            logger.warning("ignored unknown fields of %s: %s", type(self).__name__, names)
        return self


class StrictModel(BaseModel):
    """Base of this project's own schemas: an unknown field is a 422 naming it."""

    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------------ errors
class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body, used for every 4xx and 5xx answer."""

    error: ErrorInfo


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 429, 503)
}


# ------------------------------------------------------------------------------------------------ shared
class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class StreamOptions(OpenAIBaseModel):
    include_usage: bool = False


def _sampling_params(
    request: CompletionRequest | ChatCompletionRequest,
    defaults: SamplingParams,
    limits: ServerSettings,
    *,
    max_tokens: int | None,
    logprobs: int | None,
) -> SamplingParams:
    """Shared part of both ``to_sampling_params``: the request's set values over the model's defaults, capped."""
    if max_tokens is not None and max_tokens > limits.max_tokens_cap:
        raise AigcError(f"max_tokens={max_tokens} is over this server's cap of {limits.max_tokens_cap}; "
                        f"ask for at most {limits.max_tokens_cap}", param="max_tokens")
    if request.n > limits.max_n:
        raise AigcError(f"n={request.n} is over this server's cap of {limits.max_n}; ask for at most {limits.max_n} "
                        "candidates per request", param="n")
    if request.logit_bias:
        raise AigcError("logit_bias is not supported by this server; leave it out", param="logit_bias")
    if request.num_beams is not None and request.num_beams > limits.max_n:
        raise AigcError(f"num_beams={request.num_beams} is over this server's cap of {limits.max_n}; "
                        f"use at most {limits.max_n} beams", param="num_beams")
    changes: dict[str, Any] = {
        "temperature": request.temperature, "top_p": request.top_p, "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty, "seed": request.seed, "n": request.n, "logprobs": logprobs,
        "top_k": request.top_k, "min_p": request.min_p, "repetition_penalty": request.repetition_penalty,
        "min_tokens": request.min_tokens, "num_beams": request.num_beams, "length_penalty": request.length_penalty,
    }
    changes = {key: value for key, value in changes.items() if value is not None}
    if 0 < changes.get("temperature", 1) < SAMPLING_EPS:
        changes["temperature"] = 0.0
    changes["logprobs"] = logprobs  # None is meaningful here: no logprobs at all
    changes["max_tokens"] = min(max_tokens if max_tokens is not None else defaults.max_tokens, limits.max_tokens_cap)
    if request.stop is not None:
        changes["stop"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    return defaults.replace(**changes).validate()


class _SamplingExtensions(BaseModel):
    """Sampling parameters beyond OpenAI's (vLLM / Hugging Face names); see docs/generation.md."""

    top_k: int | None = Field(None, ge=0, description="Sample among the k most likely tokens; 0 turns it off.")
    min_p: float | None = Field(None, ge=0, le=1, description="Drop tokens less likely than min_p times the best.")
    repetition_penalty: float | None = Field(None, ge=MIN_REPETITION_PENALTY, le=1 / MIN_REPETITION_PENALTY,
                                             description="CTRL's penalty; 1 turns it off.")
    min_tokens: int | None = Field(None, ge=0, description="End of sequence is suppressed until this many tokens.")
    num_beams: int | None = Field(None, ge=1, description="Beams for beam search; 1 means sampling.")
    length_penalty: float | None = Field(None, description="Beam search length normalisation exponent.")


# ------------------------------------------------------------------------------------------------ models
class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "aigc-studio"
    # extensions
    backend: str
    prompt_format: str | None = Field(description="records or text; None for an image model")
    context_length: int | None = Field(description="prompt + completion tokens; None for an image model")
    model_type: str
    weights_sha256: str
    kind: Literal["text", "image"] = Field("text", description="text: /v1/completions and chat; image: /v1/images/generations")
    class_names: list[str] | None = Field(None, description="an image model's categories (what a prompt may name)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ------------------------------------------------------------------------------------------------ completions
class CompletionRequest(OpenAIBaseModel, _SamplingExtensions):
    """``POST /v1/completions``. For a records model (``e2e-copy``) the prompt is the attributes string."""

    model: str
    prompt: str | list[str] = Field(description="Text to continue, or a records model's attributes string.")
    best_of: int | None = Field(None, ge=1, description="Only best_of == n is supported (no server-side selection).")
    echo: bool = False
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    max_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    user: str | None = None

    def prompts(self) -> list[str]:
        """The prompt(s) as a list; an empty list is refused."""
        prompts = [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
        if not prompts:
            raise AigcError("prompt is an empty list; give a string or a list of strings", param="prompt")
        return prompts

    def to_sampling_params(self, defaults: SamplingParams, limits: ServerSettings) -> SamplingParams:
        """The engine's parameters: set fields over ``defaults`` (the model's), checked against ``limits``.

        Raises:
            AigcError: a value over a cap or out of range, or an unsupported option; ``param`` names it.
        """
        if self.suffix:
            raise AigcError("suffix (insertion) is not supported by this server; leave it out", param="suffix")
        if self.best_of is not None and self.best_of != self.n:
            raise AigcError(f"best_of={self.best_of} differs from n={self.n}; this server returns every candidate, "
                            "so leave best_of out or set it equal to n", param="best_of")
        if self.echo and self.logprobs is not None:
            raise AigcError("echo with logprobs would need the prompt's logprobs, which this server does not return; "
                            "use one of them", param="echo")
        return _sampling_params(self, defaults, limits, max_tokens=self.max_tokens, logprobs=self.logprobs)


class CompletionLogprobs(BaseModel):
    """The legacy completions ``logprobs`` object."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] | None = None
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None
    flags: list[dict[str, Any]] | None = Field(None, description="Extension: moderation and personal-data findings.")


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo
    system_fingerprint: str | None = None
    # extension: the provenance record of each prompt's generation (see docs/safety.md)
    provenance: list[dict[str, Any]] | None = None


class CompletionStreamResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None


# ------------------------------------------------------------------------------------------------ chat
class TextContentPart(OpenAIBaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(OpenAIBaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text (content parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(OpenAIBaseModel, _SamplingExtensions):
    """``POST /v1/chat/completions``. A records model takes the last user message as its attributes string."""

    messages: list[ChatMessage] = Field(min_length=1)
    model: str
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    user: str | None = None

    def to_sampling_params(self, defaults: SamplingParams, limits: ServerSettings) -> SamplingParams:
        """The engine's parameters (see :meth:`CompletionRequest.to_sampling_params`)."""
        if self.top_logprobs and not self.logprobs:
            raise AigcError("top_logprobs needs logprobs: true", param="top_logprobs")
        if getattr(self, "tools", None):
            raise AigcError("tools (function calling) are not supported by this server; leave them out", param="tools")
        max_tokens = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        logprobs = (self.top_logprobs or 0) if self.logprobs else None
        return _sampling_params(self, defaults, limits, max_tokens=max_tokens, logprobs=logprobs)


class ChatLogprobAlternative(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatLogprob(ChatLogprobAlternative):
    top_logprobs: list[ChatLogprobAlternative] = Field(default_factory=list)


class ChatChoiceLogprobs(BaseModel):
    content: list[ChatLogprob] | None = None


class ChatResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatResponseMessage
    logprobs: ChatChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None
    flags: list[dict[str, Any]] | None = Field(None, description="Extension: moderation and personal-data findings.")


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: UsageInfo
    system_fingerprint: str | None = None
    provenance: dict[str, Any] | None = None  # extension


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatCompletionStreamChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChatChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionStreamResponse(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionStreamChoice]
    usage: UsageInfo | None = None


# ------------------------------------------------------------------------------------------------ moderations
class ModerationRequest(OpenAIBaseModel):
    """``POST /v1/moderations``: one text or a list."""

    input: str | list[str]
    model: str | None = None


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    # extensions: what the policy decided and which spans matched
    action: str
    matches: list[dict[str, Any]]


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]


# ------------------------------------------------------------------------------------------------ content
class ContentCreateRequest(StrictModel):
    """``POST /v1/content``: a task request, answered with ranked candidates and their score cards."""

    task: str = Field(description="ad-copy, product-description, social-post, blog-draft or email-subject.")
    attributes: str | dict[str, str] = Field(description="'name[The Eagle], eatType[pub]', 'k=v; k=v' or an object.")
    audience: str | None = None
    tone: str | None = None
    keywords: list[str] = Field(default_factory=list)
    forbidden_words: list[str] = Field(default_factory=list)
    language: Literal["en", "zh"] | None = Field(None, description="None infers it from the attributes.")
    length: int | None = Field(None, ge=1, description="Target length in words (characters for Chinese).")
    n: int = Field(3, ge=1, description="Candidates to generate and rank (at most the server's max_n).")
    model: str | None = Field(None, description="A loaded model; None uses the task's default.")
    temperature: float | None = Field(None, ge=0, le=2)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stream: bool = False
    # extensions
    platform: str | None = Field(None, description="social-post only: x, instagram, linkedin, facebook, weibo, xiaohongshu.")
    logprobs: bool = Field(False, description="Return each candidate's token log-probabilities (for a heat map).")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS, description="Alternatives per token with logprobs.")


class ContentCandidate(BaseModel):
    rank: int
    text: str
    score: float = Field(description="The judge's weighted total in [0, 1].")
    scores: dict[str, float]
    weights: dict[str, float]
    violations: list[str]
    flags: list[dict[str, Any]] = Field(default_factory=list, description="Moderation and personal-data findings.")
    explanation: str
    logprobs: list[ChatLogprob] | None = None


class ContentResponse(BaseModel):
    id: str
    object: Literal["content"] = "content"
    created: int
    model: str
    task: str
    text: str
    candidates: list[ContentCandidate]
    provenance: dict[str, Any] = Field(default_factory=dict)
    moderation: dict[str, Any] = Field(default_factory=dict)
    timing: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    request: dict[str, Any] = Field(default_factory=dict)


class TaskField(BaseModel):
    name: str
    type: str
    required: bool = False
    description: str = ""
    choices: list[str] | None = None


class TaskInfo(BaseModel):
    name: str
    description: str
    languages: list[str]
    default_lengths: dict[str, list[int]]
    default_models: dict[str, str]
    fields: list[TaskField]


class TaskList(BaseModel):
    data: list[TaskInfo]


class EvaluateRequest(StrictModel):
    """``POST /v1/evaluate``: score texts someone else wrote against a task's brief."""

    task: str
    attributes: str | dict[str, str]
    keywords: list[str] = Field(default_factory=list)
    forbidden_words: list[str] = Field(default_factory=list)
    texts: list[str] = Field(min_length=1)
    language: Literal["en", "zh"] | None = None
    length: int | None = Field(None, ge=1)


class EvaluateResponse(BaseModel):
    task: str
    candidates: list[ContentCandidate]


# ------------------------------------------------------------------------------------------------ library
class LibraryItemCreate(StrictModel):
    content_id: str | None = Field(None, description="The /v1/content result it came from, if any.")
    task: str
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    language: Literal["en", "zh"] = "en"


class LibraryItemUpdate(StrictModel):
    title: str | None = Field(None, min_length=1, max_length=200)
    text: str | None = Field(None, min_length=1)
    tags: list[str] | None = None


class LibraryItem(BaseModel):
    id: str
    task: str
    title: str
    text: str
    tags: list[str]
    language: str
    created_at: str
    updated_at: str
    content_id: str | None = None

    @classmethod
    def from_info(cls, info: Any) -> LibraryItem:
        """The answer for a stored item (:class:`~aigc_studio.store.library.ContentItemInfo`); an item without
        a language (a sketch, a jingle) reads as ``"en"``."""
        data = info.to_dict()
        return cls(id=data["id"], task=data["task"], title=data["title"], text=data["text"], tags=data["tags"],
                   language=data["language"] or "en", created_at=data["created_at"], updated_at=data["updated_at"],
                   content_id=(data["request"] or {}).get("content_id"))


class LibraryList(BaseModel):
    data: list[LibraryItem]
    total: int


# ------------------------------------------------------------------------------------------------ images
class ImageGenerationRequest(OpenAIBaseModel):
    """OpenAI's ``POST /v1/images/generations`` body; ``prompt`` names a product category of the model."""

    model: str | None = Field(None, description="An image model; None uses the first one loaded.")
    prompt: str = Field(min_length=1, max_length=1000,
                        description='A category name or a phrase holding one: "ankle-boot", "a red ankle boot".')
    n: int = Field(1, ge=1, description="How many images (at most the server's max_image_n).")
    size: str | None = Field(None, description='"WxH", square: the model\'s own (28x28) or larger, upscaled.')
    response_format: str = Field("b64_json", description="Only b64_json: images are returned inline.")
    # extensions
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Fixes the images; None draws one (returned).")
    steps: int | None = Field(None, description="DDIM steps (diffusion models only).")
    guidance: float | None = Field(None, description="Classifier-free guidance weight (diffusion models only).")


class ImageData(BaseModel):
    b64_json: str
    revised_prompt: str | None = Field(None, description="The category the prompt was read as.")
    # extension
    provenance: dict[str, Any] = Field(description="The generation record embedded in the PNG (aigc:provenance).")


class ImageGenerationResponse(BaseModel):
    created: int
    data: list[ImageData]
    # extensions
    model: str
    seed: int
    audit_record_id: int | None = None


class SketchSaveRequest(StrictModel):
    b64_json: str = Field(min_length=1, description="A PNG from /v1/images/generations (its record intact).")
    title: str | None = Field(None, min_length=1, max_length=200)
    tags: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------------------------------------ safety
class WatermarkDetectRequest(StrictModel):
    text: str = Field(min_length=1)
    model: str | None = Field(None, description="Whose tokenizer to score with; None uses the default model.")


class WatermarkDetectResponse(BaseModel):
    z: float
    p_value: float
    watermarked: bool
    num_tokens_scored: int


class ProvenanceVerifyRequest(StrictModel):
    """A text, or an image (a PNG, base64), to trace back to the generation that made it: exactly one."""

    text: str | None = Field(None, min_length=1)
    image: str | None = Field(None, min_length=1, description="A PNG as base64 (the b64_json of an images answer).")

    @model_validator(mode="after")
    def _one_input(self) -> ProvenanceVerifyRequest:
        if (self.text is None) == (self.image is None):
            raise ValueError('send exactly one of "text" or "image" (a base64 PNG)')
        return self


class ImageVerification(BaseModel):
    status: Literal["verified", "modified", "missing"]
    message: str
    record: dict[str, Any] | None = Field(None, description="The generation record read from the PNG.")
    c2pa_state: str | None = Field(None, description="Valid or Trusted when a C2PA manifest validates; None without one.")


class ProvenanceVerifyResponse(BaseModel):
    produced: bool
    match: str = Field(description='text: "exact", "watermark" or "none"; image: "exact" (in this audit log), '
                                   '"record" (an intact generation record only), "modified" or "none"')
    records: list[dict[str, Any]]
    watermark: dict[str, Any] | None = None
    image: ImageVerification | None = None


class HealthResponse(BaseModel):
    status: Literal["ok"]
    models: list[str]
    database: bool
