"""The content pipeline: render a request, generate candidates, evaluate, rank, and report why.

::

    backend = BuiltinBackend.from_directory(resolve_model("e2e-copy"))
    pipeline = ContentPipeline(backend)
    result = pipeline.run(make_request("ad-copy", attributes="name[The Eagle], food[French]", keywords="riverside"))
    result.best.text, result.best.explanation

It is the same for every backend (only the :class:`~aigc_studio.backends.base.Backend` protocol is used),
task and entry point. Moderation, watermark, provenance and audit plug in through :class:`PipelineHooks`
(:class:`~aigc_studio.content.governance.Governance` builds them from the settings); each hook left None is
skipped, so the pipeline also runs bare in tests and benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aigc_studio.backends.base import Backend
from aigc_studio.content.requests import ContentRequest
from aigc_studio.content.tasks import get_task
from aigc_studio.data.cleaning import remove_control_characters
from aigc_studio.errors import AigcError
from aigc_studio.evaluation.fluency import LogprobScorer
from aigc_studio.evaluation.judge import RankedCandidate, order_candidates, rank_candidates
from aigc_studio.evaluation.metrics import EvalContext
from aigc_studio.evaluation.originality import NgramIndex
from aigc_studio.generation.sampling_params import SamplingParams


@dataclass
class ContentResult:
    """What one request produced.

    Attributes:
        request: the request as run (after input moderation, when there is one).
        prompt: what the backend was given: the compact source or the instruction prompt.
        prompt_format: ``"records"`` (compact source) or ``"text"`` (instruction prompt).
        model: the backend's model name.
        params: the sampling parameters used.
        candidates: every candidate, best first, with scores, total, violations and explanation.
        timing: seconds per step (``render``, ``generate``, ``evaluate``, ``rank``) and ``total``.
        notes: anything the caller should know (e.g. why a metric was left out).
        moderation: what input moderation found (categories and scores), empty without a moderation hook.
        provenance: the provenance record (model, weights hash, parameters, seed, time, watermark key id,
            content hash, audit record id), None without a stamp hook.
    """

    request: ContentRequest
    prompt: str
    prompt_format: str
    model: str
    params: SamplingParams
    candidates: list[RankedCandidate]
    timing: dict[str, float]
    notes: list[str] = field(default_factory=list)
    moderation: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None

    @property
    def best(self) -> RankedCandidate:
        """The top-ranked candidate."""
        return self.candidates[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the ``--json`` output of ``aigc write``)."""
        return {
            "request": self.request.to_dict(),
            "model": self.model,
            "prompt_format": self.prompt_format,
            "prompt": self.prompt,
            "params": self.params.to_dict(),
            "text": self.best.text,
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "timing": self.timing,
            "notes": self.notes,
            "moderation": self.moderation,
            "provenance": self.provenance,
        }


@dataclass
class PipelineHooks:
    """Seams for the governance steps of later issues; each is skipped while None.

    Attributes:
        moderate_input: checks (and may redact) the request; returns it with a JSON-ready summary of the
            findings; raises :class:`AigcError` to refuse it.
        sampling: adjusts the sampling parameters before generation (adds the watermark).
        moderate_output: checks the ranked candidates (given the request) and returns them with flags, redactions and, for
            blocked ones, violations; the pipeline ranks them again afterwards.
        stamp: adds the provenance record to a finished result and returns it.
        audit: records the finished result (who asked for what, what came back).
    """

    moderate_input: Callable[[ContentRequest], tuple[ContentRequest, dict[str, Any]]] | None = None
    sampling: Callable[[SamplingParams], SamplingParams] | None = None
    moderate_output: Callable[[list[RankedCandidate], ContentRequest], list[RankedCandidate]] | None = None
    stamp: Callable[[ContentResult], ContentResult] | None = None
    audit: Callable[[ContentResult], None] | None = None


class ContentPipeline:
    """Turns a :class:`ContentRequest` into a ranked, explained :class:`ContentResult`.

    Args:
        backend: where candidates come from (any :class:`~aigc_studio.backends.base.Backend`).
        ngram_index: the training corpus's n-gram index, to score originality; None skips it.
        hooks: moderation, watermark/provenance and audit steps (none by default).
        score_perplexity: score fluency with ``backend.score`` when that is cheap (a builtin model given the
            compact source: one forward pass per candidate).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        ngram_index: NgramIndex | None = None,
        hooks: PipelineHooks | None = None,
        score_perplexity: bool = True,
    ) -> None:
        self.backend = backend
        self.ngram_index = ngram_index
        self.hooks = hooks or PipelineHooks()
        self.score_perplexity = score_perplexity

    def run(self, request: ContentRequest, params: SamplingParams | None = None) -> ContentResult:
        """Write ``request.n`` candidates and rank them.

        Args:
            request: what to write (see :func:`~aigc_studio.content.requests.make_request`).
            params: sampling or beam-search settings; ``n`` is taken from the request. None uses the defaults.

        Returns:
            The result with every candidate, best first.

        Raises:
            AigcError: an unknown task, a request the task rejects, or invalid sampling parameters.
        """
        timing: dict[str, float] = {}
        notes: list[str] = []
        started = clock = time.perf_counter()

        # 1. moderate input
        moderation: dict[str, Any] = {}
        if self.hooks.moderate_input is not None:
            request, moderation = self.hooks.moderate_input(request)

        # 2. render the task: the compact source for conditional models, the instruction prompt otherwise
        task = get_task(request.task)
        task.validate(request)
        languages = self.backend.info.languages
        if languages and request.language not in languages:
            raise AigcError(
                f"model {self.backend.info.name!r} writes {', '.join(languages)}, not {request.language!r}; "
                f"choose a model trained on {request.language} text (--model) or set the language to {languages[0]}",
                param="language",
            )
        prompt_format = self.backend.info.prompt_format
        prompt = task.render_source(request) if prompt_format == "records" else task.render_prompt(request)
        clock = _lap(timing, "render", clock)

        # 3. generate n candidates (sampling, or the n best beams)
        params = (params or SamplingParams()).replace(n=request.n)
        if self.hooks.sampling is not None:
            params = self.hooks.sampling(params)
        generated = self.backend.generate([prompt], params)[0].candidates
        texts = [task.finalize(remove_control_characters(candidate.text), request) for candidate in generated]
        clock = _lap(timing, "generate", clock)

        # 4. evaluate: hard constraints and the metrics' context
        violations = [[str(violation) for violation in task.check(text, request)] for text in texts]
        lm_scorer = self._perplexity_scorer(prompt, prompt_format, texts, notes)
        context = EvalContext(
            attributes=request.attributes,
            keywords=request.keywords,
            forbidden_words=request.forbidden_words,
            length_range=task.length_range(request),
            language=request.language,
            lm_scorer=lm_scorer,
            ngram_index=self.ngram_index,
        )
        clock = _lap(timing, "evaluate", clock)

        # 5. rank: violators last, then by the task's weighted metrics
        candidates = rank_candidates(texts, context, task.metric_weights, violations=violations)
        clock = _lap(timing, "rank", clock)

        # 6. moderate output
        if self.hooks.moderate_output is not None:
            candidates = order_candidates(self.hooks.moderate_output(candidates, request), task.metric_weights)

        timing["total"] = time.perf_counter() - started
        result = ContentResult(
            request=request, prompt=prompt, prompt_format=prompt_format, model=self.backend.info.name,
            params=params, candidates=candidates, timing=timing, notes=notes, moderation=moderation,
        )

        # 7. watermark + provenance
        if self.hooks.stamp is not None:
            result = self.hooks.stamp(result)

        # 8. audit
        if self.hooks.audit is not None:
            self.hooks.audit(result)
        return result

    def _perplexity_scorer(self, prompt: str, prompt_format: str, texts: list[str], notes: list[str]) -> LogprobScorer | None:
        """Token log-probabilities of every candidate under the backend's model, or None when not cheap.

        All candidates are scored up front so that perplexity is either there for all of them or for none:
        scores are only comparable under one scorer.
        """
        if not self.score_perplexity or self.backend.info.backend != "builtin" or prompt_format != "records":
            return None
        try:
            logprobs = {text: [token.logprob for token in self.backend.score(prompt, text)] for text in set(texts)}
        except AigcError as error:  # a candidate that filled the model's context leaves no room for <eos>
            notes.append(f"perplexity left out: {error}")
            return None
        return logprobs.__getitem__


def _lap(timing: dict[str, float], step: str, since: float) -> float:
    now = time.perf_counter()
    timing[step] = now - since
    return now
