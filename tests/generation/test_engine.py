"""The continuous-batching engine, in this process and in a child process: results equal unbatched generation,
streaming, cancellation, back-pressure."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from aigc_studio.backends.base import BackendInfo, Candidate, GenerationResult, StreamChunk
from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.data.tokenizer import TextTokenizer, train_tokenizer
from aigc_studio.errors import AigcError
from aigc_studio.generation.engine import Engine, EngineOverloaded, RequestCancelled
from aigc_studio.generation.engine_process import EngineProcess
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.gpt import GPT, GPTConfig
from aigc_studio.models.lstm import LSTMConfig, LSTMLanguageModel
from aigc_studio.models.model_dir import GenerationConfig, save_pretrained

# Records the tiny models learn: attributes -> a sentence that names the venue through its placeholder, so
# the engine's output goes through delexicalisation and relexicalisation like a real E2E model's.
RECORDS = [
    ("name[__name__], eatType[pub]", "__name__ is a pub. __name__ is nice."),
    ("name[__name__], food[French]", "__name__ serves French food."),
    ("name[__name__], area[riverside]", "__name__ is by the river, near the park."),
    ("eatType[coffee shop], food[Italian]", "a coffee shop with Italian food and cake."),
    ("area[city centre]", "连衣裙简约时尚，宽松舒适。"),  # split over several byte tokens each
]
PROMPTS = [
    "name[The Golden Curry], eatType[pub]",
    "name[Blue Spice], food[French]",
    "name[Zizzi], area[riverside]",
    "eatType[coffee shop], food[Italian]",
    "area[city centre]",
    "food[French]",
]
CONTEXT = 64


def _train(model: torch.nn.Module, tokenizer: TextTokenizer) -> torch.nn.Module:
    rows = [[tokenizer.bos_id, *tokenizer.encode(source), tokenizer.sep_id, *tokenizer.encode(target), tokenizer.eos_id]
            for source, target in RECORDS]
    width = max(len(row) for row in rows) - 1
    inputs = torch.full((len(rows), width), tokenizer.pad_id)
    targets = torch.full((len(rows), width), -100)
    for index, row in enumerate(rows):
        inputs[index, :len(row) - 1] = torch.tensor(row[:-1])
        targets[index, :len(row) - 1] = torch.tensor(row[1:])
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for _ in range(120):
        _, loss = model(inputs, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def _model_dir(tmp_path_factory: pytest.TempPathFactory, kind: str) -> Path:
    tokenizer = train_tokenizer([text for record in RECORDS for text in record], kind="bpe", vocab_size=320)
    torch.manual_seed(0)
    if kind == "gpt":
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=CONTEXT, n_layer=1, n_head=2, n_embd=32))
    else:
        model = LSTMLanguageModel(LSTMConfig(vocab_size=tokenizer.vocab_size, block_size=CONTEXT, n_embd=32,
                                             hidden_size=32, n_layer=1, dropout=0.0))
    directory = tmp_path_factory.mktemp(kind) / "model"
    save_pretrained(_train(model, tokenizer), tokenizer, directory,
                    generation_config=GenerationConfig(delexicalized_slots=["name"]))
    return directory


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model_dir(tmp_path_factory, "gpt")


@pytest.fixture(scope="module")
def lstm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model_dir(tmp_path_factory, "lstm")


@pytest.fixture(params=["gpt", "lstm"])
def backend(request: pytest.FixtureRequest) -> BuiltinBackend:
    return BuiltinBackend.from_directory(request.getfixturevalue(f"{request.param}_dir"))


@pytest.fixture
def engine(backend: BuiltinBackend) -> Iterator[Engine]:
    engine = Engine(backend, max_batch_size=16, max_queue=32)
    yield engine
    engine.shutdown(drain=False, timeout=10)


# Different prompts, lengths, seeds and settings, all in flight together.
MIXED = [
    (PROMPTS[0], SamplingParams(temperature=0, max_tokens=30)),
    (PROMPTS[1], SamplingParams(temperature=1.0, top_k=20, max_tokens=25, n=3, seed=1)),
    (PROMPTS[2], SamplingParams(temperature=0.8, top_p=0.9, max_tokens=40, seed=2, stop=["park"])),
    (PROMPTS[3], SamplingParams(temperature=1.2, max_tokens=12, seed=3, repetition_penalty=1.3, logprobs=2)),
    (PROMPTS[4], SamplingParams(temperature=0, max_tokens=40, presence_penalty=0.5, frequency_penalty=0.3)),
    (PROMPTS[5], SamplingParams(temperature=1.5, min_p=0.05, max_tokens=20, n=2, seed=4, no_repeat_ngram_size=2)),
    (PROMPTS[0], SamplingParams(temperature=1.0, max_tokens=50, min_tokens=45, seed=5)),  # runs into its budget
    (PROMPTS[1], SamplingParams(temperature=0, max_tokens=8)),
]


def assert_same_result(result: GenerationResult, expected: GenerationResult) -> None:
    """Equal texts, finish reasons and token counts; logprobs equal up to float rounding between batch shapes."""
    assert result.prompt == expected.prompt and result.prompt_tokens == expected.prompt_tokens
    assert [(c.text, c.finish_reason, c.num_tokens) for c in result.candidates] == \
        [(c.text, c.finish_reason, c.num_tokens) for c in expected.candidates]
    for candidate, reference in zip(result.candidates, expected.candidates):
        assert candidate.cumulative_logprob == pytest.approx(reference.cumulative_logprob, abs=1e-3)
        assert (candidate.logprobs is None) == (reference.logprobs is None)
        if reference.logprobs is not None:
            assert [t.token for t in candidate.logprobs] == [t.token for t in reference.logprobs]
            assert [list(t.top_logprobs) for t in candidate.logprobs] == [list(t.top_logprobs) for t in reference.logprobs]


def submit_staggered(engine: Engine, requests: list[tuple[str, SamplingParams]], delay: float = 0.01) -> list:
    """Submit from one thread per request, each a little later, so most join while others are mid-decode."""
    handles: list = [None] * len(requests)

    def submit(index: int) -> None:
        time.sleep(delay * index)
        handles[index] = engine.submit(*requests[index])

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return handles


def test_concurrent_requests_equal_unbatched_generation(backend, engine):
    expected = [backend.generate([prompt], params)[0] for prompt, params in MIXED]
    assert any("Golden Curry" in c.text for c in expected[0].candidates)  # relexicalised placeholders are exercised
    handles = submit_staggered(engine, MIXED)
    for handle, reference in zip(handles, expected):
        assert_same_result(handle.result(timeout=60), reference)
    stats = engine.stats()
    assert stats.requests_finished == len(MIXED) and stats.running_rows == 0 and stats.queue_depth == 0
    assert stats.tokens_generated == sum(r.completion_tokens for r in expected)
    assert stats.last_batch_size >= 1
    # staggered requests share steps: fewer steps than tokens, but at least the longest request's
    assert max(r.completion_tokens for r in expected) <= stats.decode_steps < stats.tokens_generated


def test_requests_join_a_running_batch(backend):
    # One long request runs; the others are submitted once it has made tokens, so they join mid-decode.
    engine = Engine(backend, max_batch_size=16)
    long = engine.submit(PROMPTS[0], SamplingParams(temperature=1.0, max_tokens=60, min_tokens=60, seed=9))
    events = long.events()
    next(events)
    later = [engine.submit(prompt, params) for prompt, params in MIXED[:4]]
    assert engine.stats().running_requests >= 1
    for handle, (prompt, params) in zip(later, MIXED[:4]):
        assert_same_result(handle.result(timeout=60), backend.generate([prompt], params)[0])
    assert_same_result(long.result(timeout=60), backend.generate([PROMPTS[0]], long.params)[0])
    engine.shutdown()


@pytest.mark.parametrize("index", range(len(MIXED)))
def test_streamed_events_join_to_the_final_texts(engine, index):
    prompt, params = MIXED[index]
    handle = engine.submit(prompt, params)
    events = list(handle.events())
    result = handle.result()
    for j, candidate in enumerate(result.candidates):
        mine = [event for event in events if event.candidate_index == j]
        assert "".join(event.text for event in mine) == candidate.text
        assert len(mine) == candidate.num_tokens  # one event per token
        assert [event.finish_reason for event in mine] == [None] * (len(mine) - 1) + [candidate.finish_reason]
        if "name[" in prompt:  # the venue's name is put back, also in the middle of a stream
            assert "__name__" not in "".join(event.text for event in mine)
        assert all((event.logprob is not None) == (params.logprobs is not None) for event in mine)


def test_one_candidate_streams_like_the_backend(backend, engine):
    params = SamplingParams(temperature=0.9, max_tokens=40, seed=6)
    chunks = list(backend.stream(PROMPTS[0], params))
    events = list(engine.submit(PROMPTS[0], params).events())
    assert [event.text for event in events] == [chunk.text for chunk in chunks]


def test_async_iterator_under_asyncio(backend, engine):
    params = SamplingParams(temperature=0.7, max_tokens=30, n=2, seed=8)

    async def consume() -> list:
        handles = [engine.submit(prompt, params) for prompt in PROMPTS[:3]]
        async def collect(handle):
            return [event async for event in handle.aevents()]
        return await asyncio.gather(*(collect(handle) for handle in handles))

    results = asyncio.run(consume())
    for prompt, events in zip(PROMPTS[:3], results):
        expected = backend.generate([prompt], params)[0]
        for j, candidate in enumerate(expected.candidates):
            assert "".join(e.text for e in events if e.candidate_index == j) == candidate.text


def test_a_consumer_that_falls_behind_gets_the_events_together(backend, engine):
    params = SamplingParams(temperature=0.8, max_tokens=30, n=2, seed=9)
    handle = engine.submit(PROMPTS[1], params)
    handle.result()  # everything is published before the consumer reads

    async def consume() -> list:
        return [batch async for batch in handle.abatches()]

    batches = asyncio.run(consume())
    assert len(batches) == 1 and len(batches[0]) > 2
    expected = backend.generate([PROMPTS[1]], params)[0]
    for j, candidate in enumerate(expected.candidates):
        assert "".join(e.text for e in batches[0] if e.candidate_index == j) == candidate.text


# At least 50 new tokens (PROMPTS[0] leaves a budget of 52): still running long after its first event.
LONG = SamplingParams(temperature=1.0, max_tokens=CONTEXT, min_tokens=50, seed=1)


def test_cancel_frees_the_rows_at_the_next_step(engine):
    handle = engine.submit(PROMPTS[0], LONG.replace(n=3))
    events = handle.events()
    next(events)
    assert engine.stats().running_rows == 3
    handle.cancel()
    assert all(event.finish_reason is None for event in events)  # the iterator ends; no candidate finished
    with pytest.raises(RequestCancelled):
        handle.result(timeout=10)
    deadline = time.monotonic() + 10
    while engine.stats().running_rows and time.monotonic() < deadline:
        time.sleep(0.005)
    stats = engine.stats()
    assert stats.running_rows == 0 and stats.running_requests == 0
    # the engine goes on serving
    assert engine.submit(PROMPTS[1], SamplingParams(temperature=0, max_tokens=5)).result(timeout=10).candidates


def test_a_full_queue_raises_at_once():
    backend = EchoBackend()
    engine = Engine(backend, max_workers=1, max_queue=2)
    running = engine.submit("blocks the only worker", SamplingParams())
    assert backend.started.wait(10)
    queued = [engine.submit(f"waits {i}", SamplingParams()) for i in range(2)]
    started = time.monotonic()
    with pytest.raises(EngineOverloaded, match="queue is full"):
        engine.submit("one too many", SamplingParams())
    assert time.monotonic() - started < 0.5
    assert engine.stats().queue_depth == 2
    backend.release.set()
    assert [handle.result(timeout=10).candidates[0].text for handle in [running, *queued]] == \
        ["blocks the only worker", "waits 0", "waits 1"]
    engine.shutdown()


def test_queued_requests_wait_for_free_rows(backend):
    engine = Engine(backend, max_batch_size=2, max_queue=8)
    params = SamplingParams(temperature=1.0, max_tokens=20, n=2, seed=3)
    handles = [engine.submit(prompt, params) for prompt in PROMPTS[:3]]
    for handle, prompt in zip(handles, PROMPTS[:3]):
        assert_same_result(handle.result(timeout=60), backend.generate([prompt], params)[0])
    assert engine.stats().last_batch_size <= 2
    engine.shutdown()


def test_shutdown_drains_running_and_queued_requests(backend):
    engine = Engine(backend, max_batch_size=2, max_queue=8)
    params = SamplingParams(temperature=0, max_tokens=30)
    handles = [engine.submit(prompt, params) for prompt in PROMPTS[:4]]
    engine.shutdown(drain=True, timeout=60)
    assert all(handle.done for handle in handles)
    for handle, prompt in zip(handles, PROMPTS[:4]):
        assert_same_result(handle.result(), backend.generate([prompt], params)[0])
    with pytest.raises(EngineOverloaded, match="shutting down"):
        engine.submit(PROMPTS[0], params)


def test_shutdown_without_drain_cancels_and_consumers_finish(backend):
    engine = Engine(backend, max_batch_size=1, max_queue=8)
    handles = [engine.submit(PROMPTS[0], LONG) for _ in range(3)]
    next(handles[0].events())  # the first one is running
    engine.shutdown(drain=False, timeout=10)
    for handle in handles:
        list(handle.events())  # ends, does not hang
        with pytest.raises(RequestCancelled):
            handle.result(timeout=1)


@pytest.mark.parametrize(
    ("changes", "param"),
    [({"temperature": -1.0}, "temperature"), ({"n": 17}, "n"), ({"max_tokens": 0}, "max_tokens")],
)
def test_bad_params_raise_at_submit(engine, changes, param):
    params = SamplingParams()
    for name, value in changes.items():
        setattr(params, name, value)  # as a caller that edits a built object would
    with pytest.raises(AigcError) as error:
        engine.submit(PROMPTS[0], params)
    assert error.value.param == param
    assert engine.stats().queue_depth == 0


def test_prompt_longer_than_the_context_raises_at_submit(engine):
    with pytest.raises(AigcError, match="context"):
        engine.submit("eatType[pub] " * 40, SamplingParams(max_tokens=5))


def test_beam_search_runs_alone_with_the_backends_result(backend, engine):
    params = SamplingParams(num_beams=3, n=2, max_tokens=20)
    sampled = engine.submit(PROMPTS[1], MIXED[1][1])
    beams = engine.submit(PROMPTS[0], params)
    assert_same_result(beams.result(timeout=60), backend.generate([PROMPTS[0]], params)[0])
    assert_same_result(sampled.result(timeout=60), backend.generate([PROMPTS[1]], MIXED[1][1])[0])
    assert {event.candidate_index for event in beams.events()} == {0, 1}


class EchoBackend:
    """A backend that is not builtin (as a remote one would be): answers with the prompt, word by word.

    A prompt starting with "blocks" waits for ``release``, so a test can keep the thread pool busy.
    """

    info = BackendInfo(name="echo", backend="openai", prompt_format="text", context_length=100)

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def generate(self, prompts: list[str], params: SamplingParams) -> list[GenerationResult]:
        return [GenerationResult(p, [Candidate(p, "stop", len(p.split()))] * params.n, len(p.split())) for p in prompts]

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[StreamChunk]:
        if prompt.startswith("blocks"):
            self.started.set()
            self.release.wait(10)
        words = prompt.split(" ")
        for index, word in enumerate(words):
            last = index == len(words) - 1
            yield StreamChunk(text=word if last else word + " ", finish_reason="stop" if last else None)

    def score(self, prompt, continuation):
        return []


def test_other_backends_run_on_a_thread_pool():
    engine = Engine(EchoBackend(), max_workers=2)
    handles = [engine.submit(f"hello number {i}", SamplingParams()) for i in range(5)]
    multi = engine.submit("two of them", SamplingParams(n=2))
    for i, handle in enumerate(handles):
        assert "".join(event.text for event in handle.events()) == f"hello number {i}"
        assert handle.result().candidates[0].text == f"hello number {i}"
    assert [c.text for c in multi.result(timeout=10).candidates] == ["two of them"] * 2
    engine.shutdown()
    assert engine.stats().requests_finished == 6


# -- the engine in a child process (generation/engine_process.py) -------------------------------------------

LONG = SamplingParams(temperature=1.0, max_tokens=45, min_tokens=45, seed=1)  # runs into its budget


@pytest.fixture(scope="module")
def engine_process(gpt_dir: Path) -> Iterator[EngineProcess]:
    engine = EngineProcess(BuiltinBackend.from_directory(gpt_dir), max_batch_size=16, max_queue=32)
    engine.start()
    yield engine
    engine.shutdown(drain=False, timeout=30)


def test_engine_process_results_and_streams_equal_unbatched_generation(engine_process):
    backend = engine_process.backend
    expected = [backend.generate([prompt], params)[0] for prompt, params in MIXED]
    before = engine_process.stats()
    handles = submit_staggered(engine_process, MIXED)
    for handle, reference in zip(handles, expected):
        result = handle.result(timeout=60)
        assert_same_result(result, reference)
        texts: dict[int, str] = {}
        for event in handle.events():
            texts[event.candidate_index] = texts.get(event.candidate_index, "") + event.text
        assert [texts[index] for index in range(len(result.candidates))] == [c.text for c in result.candidates]
    stats = engine_process.stats()
    assert stats.requests_finished - before.requests_finished == len(MIXED)
    assert stats.tokens_generated - before.tokens_generated == sum(r.completion_tokens for r in expected)
    assert stats.running_rows == 0 and stats.queue_depth == 0


def test_engine_process_streams_to_asyncio(engine_process):
    async def consume() -> tuple[list, object]:
        handle = engine_process.submit(PROMPTS[0], SamplingParams(temperature=0, max_tokens=20))
        return [event async for event in handle.aevents()], handle

    events, handle = asyncio.run(consume())
    assert "".join(event.text for event in events) == handle.result().candidates[0].text
    assert events[-1].finish_reason is not None


def test_engine_process_cancel_ends_a_running_request(engine_process):
    handle = engine_process.submit(PROMPTS[0], LONG.replace(n=8))
    next(iter(handle.events()))  # it runs
    handle.cancel()
    with pytest.raises(RequestCancelled):
        handle.result(timeout=30)
    assert engine_process.submit(PROMPTS[1], SamplingParams(temperature=0, max_tokens=5)).result(timeout=30).candidates


@pytest.mark.parametrize(("changes", "param"), [({"n": 17}, "n"), ({"temperature": -1.0}, "temperature")])
def test_engine_process_checks_requests_at_submit(engine_process, changes, param):
    with pytest.raises(AigcError) as error:
        engine_process.submit(PROMPTS[0], SamplingParams(max_tokens=5).replace(**changes))
    assert error.value.param == param


def test_engine_process_answers_a_full_queue_at_once_and_drains_at_shutdown(gpt_dir):
    engine = EngineProcess(BuiltinBackend.from_directory(gpt_dir), max_batch_size=1, max_queue=1)
    engine.start()
    try:
        handles = [engine.submit(PROMPTS[0], LONG) for _ in range(2)]  # one decoding, one waiting
        started = time.perf_counter()
        with pytest.raises(EngineOverloaded, match="queue is full"):
            engine.submit(PROMPTS[0], LONG)
        assert time.perf_counter() - started < 1
        engine.shutdown(drain=True, timeout=60)
        assert [handle.result(timeout=1).candidates[0].num_tokens for handle in handles] == [45, 45]
        with pytest.raises(EngineOverloaded):
            engine.submit(PROMPTS[0], LONG)
    finally:
        engine.shutdown(drain=False, timeout=10)


def test_engine_process_that_dies_fails_its_requests_and_takes_no_more(gpt_dir):
    engine = EngineProcess(BuiltinBackend.from_directory(gpt_dir), max_batch_size=16, max_queue=4)
    engine.start()
    try:
        handle = engine.submit(PROMPTS[0], LONG.replace(n=16))
        next(iter(handle.events()))  # it runs: 44 more steps of 16 rows to go
        engine._process.kill()
        with pytest.raises(AigcError, match="engine process stopped"):
            handle.result(timeout=30)
        with pytest.raises(EngineOverloaded):
            engine.submit(PROMPTS[0], LONG)
    finally:
        engine.shutdown(drain=False, timeout=10)


def test_an_engine_process_decodes_in_the_quantization_its_backend_was_loaded_with(gpt_dir):
    int8 = BuiltinBackend.from_directory(gpt_dir, quantize="int8")
    params = SamplingParams(temperature=0, max_tokens=12, min_tokens=12)
    expected = int8.generate([PROMPTS[0]], params)[0].candidates[0].cumulative_logprob
    fp32 = BuiltinBackend.from_directory(gpt_dir).generate([PROMPTS[0]], params)[0].candidates[0].cumulative_logprob
    engine = EngineProcess(int8, max_batch_size=4, max_queue=4)
    engine.start()
    try:
        served = engine.submit(PROMPTS[0], params).result(timeout=60).candidates[0].cumulative_logprob
    finally:
        engine.shutdown(drain=False, timeout=10)
    # This random model's logprobs move by about 1e-4 in int8; fp32 rounding between runs is about 1e-6.
    assert abs(served - expected) < 2e-5 < 5e-5 < abs(expected - fp32)


def test_engine_process_that_cannot_load_its_model_raises_at_start(gpt_dir, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(gpt_dir, directory)
    backend = BuiltinBackend.from_directory(directory)
    (directory / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(AigcError, match="failed to start"):
        EngineProcess(backend).start()


def test_an_engine_process_leaves_one_core_to_the_http_side_and_rejects_zero_threads(gpt_dir, monkeypatch):
    from aigc_studio.generation import engine_process as module

    monkeypatch.setattr(module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert module.default_engine_threads() == 3
    monkeypatch.setattr(module.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert module.default_engine_threads() == 1
    backend = BuiltinBackend.from_directory(gpt_dir)
    assert EngineProcess(backend).threads == 1 and EngineProcess(backend, threads=5).threads == 5
    with pytest.raises(AigcError, match="threads must be an integer >= 1"):
        EngineProcess(backend, threads=0)
