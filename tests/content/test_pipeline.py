from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence

import pytest

from aigc_studio.backends.base import Backend, BackendInfo, Candidate, GenerationResult, StreamChunk, TokenLogprob
from aigc_studio.content.pipeline import ContentPipeline, PipelineHooks
from aigc_studio.content.requests import make_request
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import SamplingParams

EAGLE_MR = "name[The Eagle], eatType[pub], area[riverside]"
GOOD = "The Eagle is a pub by the river."
CHEAP = "The Eagle is a cheap pub by the river."
WRONG = "The Eagle is a coffee shop in the city centre."


class FakeBackend:
    """Returns fixed candidates, records what it was asked, and scores every token with log(1/2)."""

    def __init__(self, texts: Sequence[str], *, kind: str = "fake", prompt_format: str = "records",
                 score_error: AigcError | None = None) -> None:
        self.info = BackendInfo(name="fake-model", backend=kind, prompt_format=prompt_format, context_length=256)
        self.texts = list(texts)
        self.score_error = score_error
        self.prompts: list[str] = []
        self.params: list[SamplingParams] = []
        self.scored: list[tuple[str, str]] = []

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[GenerationResult]:
        self.prompts.extend(prompts)
        self.params.append(params)
        candidates = [Candidate(text=text, finish_reason="stop", num_tokens=len(text.split())) for text in self.texts[: params.n]]
        return [GenerationResult(prompt=prompt, candidates=candidates, prompt_tokens=4) for prompt in prompts]

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[StreamChunk]:
        yield StreamChunk(text=self.texts[0], finish_reason="stop")

    def score(self, prompt: str, continuation: str) -> list[TokenLogprob]:
        if self.score_error is not None:
            raise self.score_error
        self.scored.append((prompt, continuation))
        return [TokenLogprob(token=word, logprob=math.log(0.5)) for word in continuation.split()]


def run(texts: Sequence[str], **request_fields):
    backend = FakeBackend(texts)
    request = make_request("ad-copy", **{"attributes": EAGLE_MR, "n": len(texts), **request_fields})
    return backend, ContentPipeline(backend).run(request)


def test_fake_backend_keeps_the_backend_protocol():
    assert isinstance(FakeBackend([GOOD]), Backend)


def test_candidate_with_a_forbidden_word_ranks_last_and_is_flagged():
    _, result = run([CHEAP, GOOD, "The Eagle pub, by the riverside."], forbid="cheap")
    assert [candidate.text for candidate in result.candidates][-1] == CHEAP
    last = result.candidates[-1]
    assert last.violations == ["forbidden word 'cheap' x1"] and not last.acceptable
    assert all(candidate.acceptable for candidate in result.candidates[:-1])
    assert "ranked 3rd of 3, after every candidate that meets the hard constraints" in last.explanation


def test_slot_contradiction_and_missing_keyword_are_flagged_and_rank_last():
    _, result = run([WRONG, "The Eagle is a pub.", GOOD], keywords="river")
    assert result.best.text == GOOD and result.best.rank == 1 and result.best.acceptable
    flagged = {candidate.text: candidate.violations for candidate in result.candidates[1:]}
    assert flagged["The Eagle is a pub."] == ["missing keyword 'river'", "missing area[riverside]"]
    assert "contradicted eatType[pub]" in flagged[WRONG]


def test_every_candidate_carries_scores_total_and_explanation():
    _, result = run([GOOD, "The Eagle is a pub."])
    for candidate in result.candidates:
        assert {"slot_error_rate", "length_compliance", "flesch_reading_ease"} <= set(candidate.scores)
        assert 0.0 <= candidate.total <= 1.0 and candidate.explanation.startswith(f"ranked {candidate.rank}")
    assert result.best.text == GOOD


def test_records_backends_get_the_compact_source_and_text_backends_the_instruction_prompt():
    records, _ = run([GOOD])
    assert records.prompts == [EAGLE_MR]
    text_backend = FakeBackend([GOOD], prompt_format="text")
    result = ContentPipeline(text_backend).run(make_request("ad-copy", attributes=EAGLE_MR, tone="warm", n=1))
    assert text_backend.prompts[0].startswith("You are a senior marketing copywriter") and "Tone: warm." in result.prompt
    assert result.prompt_format == "text"


def test_n_comes_from_the_request_and_the_other_params_are_kept():
    backend = FakeBackend([GOOD, GOOD, GOOD])
    pipeline = ContentPipeline(backend)
    result = pipeline.run(make_request("ad-copy", attributes=EAGLE_MR, n=3), SamplingParams(num_beams=4, n=1))
    assert (backend.params[0].n, backend.params[0].num_beams) == (3, 4) and len(result.candidates) == 3


def test_perplexity_uses_backend_score_only_for_builtin_records_models():
    builtin = FakeBackend([GOOD, "The Eagle is a pub."], kind="builtin")
    result = ContentPipeline(builtin).run(make_request("ad-copy", attributes=EAGLE_MR, n=2))
    assert all(candidate.scores["perplexity"] == pytest.approx(2.0) for candidate in result.candidates)
    assert sorted(builtin.scored) == sorted([(EAGLE_MR, GOOD), (EAGLE_MR, "The Eagle is a pub.")])
    _, other = run([GOOD])
    assert "perplexity" not in other.best.scores


def test_perplexity_is_left_out_for_all_candidates_when_one_cannot_be_scored():
    backend = FakeBackend([GOOD], kind="builtin", score_error=AigcError("prompt and continuation are 300 tokens"))
    result = ContentPipeline(backend).run(make_request("ad-copy", attributes=EAGLE_MR, n=1))
    assert "perplexity" not in result.best.scores
    assert result.notes == ["perplexity left out: prompt and continuation are 300 tokens"]


def test_social_post_candidates_are_finalised_with_hashtags_before_judging():
    backend = FakeBackend([GOOD])
    request = make_request("social-post", attributes=EAGLE_MR, keywords="riverside", platform="x", n=1)
    result = ContentPipeline(backend).run(request)
    assert result.best.text == f"{GOOD} #Riverside #TheEagle" and result.best.acceptable


def test_hooks_run_at_their_steps_in_order():
    calls: list[str] = []

    def moderate_input(request):
        calls.append("input")
        return make_request("ad-copy", attributes=EAGLE_MR, forbid="cheap", n=request.n), {"flagged": False}

    def sampling(params):
        calls.append("sampling")
        return params.replace(seed=7)

    def moderate_output(candidates, request):
        calls.append("output")
        return [candidate for candidate in candidates if candidate.acceptable]

    def stamp(result):
        calls.append("stamp")
        result.notes.append("stamped")
        return result

    hooks = PipelineHooks(moderate_input=moderate_input, sampling=sampling, moderate_output=moderate_output,
                          stamp=stamp, audit=lambda result: calls.append("audit"))
    result = ContentPipeline(FakeBackend([CHEAP, GOOD]), hooks=hooks).run(make_request("ad-copy", attributes=EAGLE_MR, n=2))
    assert calls == ["input", "sampling", "output", "stamp", "audit"]
    assert [candidate.text for candidate in result.candidates] == [GOOD] and result.notes == ["stamped"]
    assert result.params.seed == 7 and result.moderation == {"flagged": False}


def test_output_moderation_violations_rank_last():
    def block_first(candidates, request):
        for candidate in candidates:
            if candidate.rank == 1:
                candidate.violations.append("moderation: blocked")
        return candidates

    plain = ContentPipeline(FakeBackend([GOOD, GOOD + " Truly."])).run(make_request("ad-copy", attributes=EAGLE_MR, n=2))
    hooked = ContentPipeline(FakeBackend([GOOD, GOOD + " Truly."]), hooks=PipelineHooks(moderate_output=block_first)).run(
        make_request("ad-copy", attributes=EAGLE_MR, n=2))
    assert hooked.candidates[-1].text == plain.candidates[0].text
    assert hooked.candidates[-1].violations == ["moderation: blocked"]
    assert [candidate.rank for candidate in hooked.candidates] == [1, 2]


def test_input_moderation_can_refuse_before_anything_is_generated():
    def refuse(request):
        raise AigcError("the request breaks the content policy")

    backend = FakeBackend([GOOD])
    with pytest.raises(AigcError, match="content policy"):
        ContentPipeline(backend, hooks=PipelineHooks(moderate_input=refuse)).run(make_request("ad-copy", attributes=EAGLE_MR))
    assert backend.prompts == []


def test_unknown_task_and_bad_platform_fail_before_generation():
    backend = FakeBackend([GOOD])
    with pytest.raises(AigcError, match="unknown task 'poem'"):
        ContentPipeline(backend).run(make_request("poem", attributes=EAGLE_MR))
    with pytest.raises(AigcError, match="applies to social-post only"):
        ContentPipeline(backend).run(make_request("ad-copy", attributes=EAGLE_MR, platform="x"))
    assert backend.prompts == []


def test_result_is_json_ready_with_timings():
    _, result = run([GOOD, CHEAP], forbid="cheap")
    data = json.loads(json.dumps(result.to_dict()))
    assert data["text"] == GOOD and data["model"] == "fake-model" and data["request"]["forbidden_words"] == ["cheap"]
    assert [candidate["rank"] for candidate in data["candidates"]] == [1, 2]
    assert set(result.timing) == {"render", "generate", "evaluate", "rank", "total"}
    assert result.timing["total"] >= sum(result.timing[step] for step in ("render", "generate", "evaluate", "rank"))


def test_control_characters_a_model_writes_never_reach_the_deliverable():
    _, result = run(["The Eagle\x1b is a pub\u200b by the river.", GOOD])
    assert [candidate.text for candidate in result.candidates] == [GOOD, GOOD]
