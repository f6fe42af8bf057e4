"""The serving engine: one per loaded model, it owns the model and runs every request through it.

Requests enter a bounded queue (:meth:`Engine.submit`; a full queue raises :class:`EngineOverloaded` at once,
it never blocks). A worker thread decodes all running requests together, one model step per token for every
row of every request (continuous batching, Yu et al. 2022 "Orca"): between two steps, queued requests join
(their prompt is prefilled in the next step's pass and its state merged into the running batch,
:class:`DecodeBatch`) and finished or cancelled ones leave. A request with ``n`` candidates takes ``n`` of the
``max_batch_size`` rows.

Each candidate keeps its own random numbers (see :mod:`~aigc_studio.generation.sampler`), so a request's result
is the same as ``backend.generate([prompt], params)[0]`` with the same seed, whatever it shares the batch with;
only float rounding differs between batch shapes. Tokens reach the request's consumers as they are made:
:meth:`RequestHandle.events` (blocking) and :meth:`RequestHandle.aevents` / :meth:`RequestHandle.abatches`
(asyncio, woken through ``loop.call_soon_threadsafe``, no polling).

Beam search requests (``num_beams > 1``) do not join the batch: the worker runs each alone between two steps.
Backends other than :class:`~aigc_studio.backends.builtin.BuiltinBackend` (a transformers or OpenAI-compatible
backend) cannot share a batch; the engine runs their requests through ``backend.stream`` / ``backend.generate``
on a small thread pool, behind the same queue, so a server uses an engine for every model.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from aigc_studio.backends.base import Backend, Candidate, FinishReason, GenerationResult, TokenLogprob
from aigc_studio.backends.builtin import BuiltinBackend, BuiltinRequest
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampler import DecodeBatch, DecodeGroup, stream_event
from aigc_studio.generation.sampling_params import SamplingParams


class EngineOverloaded(AigcError):
    """The engine takes no more requests now: its queue is full or it is shutting down (HTTP 503/429)."""


class RequestCancelled(AigcError):
    """The request was cancelled (by its handle or by ``shutdown(drain=False)``) before it finished."""


@dataclass(frozen=True)
class EngineEvent:
    """A new piece of one candidate's text; the candidate's last event carries its ``finish_reason``.

    ``text`` is what this token makes final, relexicalised and held back exactly as
    :meth:`BuiltinBackend.stream` does, so it can be empty; joining a candidate's texts gives its final text.
    ``logprob`` is set when the request asked for logprobs.
    """

    candidate_index: int
    text: str
    logprob: TokenLogprob | None = None
    finish_reason: FinishReason | None = None


@dataclass(frozen=True)
class EngineStats:
    """A snapshot for monitoring (Prometheus gauges and counters)."""

    queue_depth: int  # requests waiting to join
    running_requests: int
    running_rows: int  # candidates decoding now
    last_batch_size: int  # rows in the latest decode step
    tokens_generated: int  # since the engine started
    decode_steps: int  # batched decode steps since the engine started: tokens per step is the mean batch size
    requests_finished: int  # completed, failed or cancelled


class HandleObserver(Protocol):
    """Told of what a :class:`RequestHandle` receives, on the thread that delivers it (the engine's worker)."""

    def published(self, events: list[EngineEvent]) -> None: ...

    def finished(self, result: GenerationResult | None, error: BaseException | None) -> None: ...


class RequestHandle:
    """A submitted request: its events as they come, its result, and a way to cancel it. Thread-safe."""

    def __init__(self, engine: Any, prompt: str, params: SamplingParams, observer: HandleObserver | None = None) -> None:
        self.prompt = prompt
        self.params = params
        self._engine = engine  # an Engine or EngineProcess: it implements _cancel
        self._observer = observer
        self._condition = threading.Condition()
        self._events: list[EngineEvent] = []
        self._listeners: list[_AsyncListener] = []
        self._done = False
        self._finished = threading.Event()  # for result(): not woken by every published token
        self._result: GenerationResult | None = None
        self._error: BaseException | None = None
        self.cancel_requested = False

    @property
    def done(self) -> bool:
        """Whether the request has finished, failed or been cancelled."""
        return self._done

    def cancel(self) -> None:
        """Stop the request (e.g. the client went away): a queued one never starts, a running one's rows leave
        the batch before the next step. Its event iterators end; :meth:`result` raises :class:`RequestCancelled`."""
        self._engine._cancel(self)

    def result(self, timeout: float | None = None) -> GenerationResult:
        """Wait for the request and return its result (equal to ``backend.generate([prompt], params)[0]``).

        Raises:
            TimeoutError: not finished within ``timeout`` seconds.
            AigcError: the request failed; :class:`RequestCancelled` when it was cancelled.
        """
        if not self._finished.wait(timeout):
            raise TimeoutError(f"the request did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def events(self) -> Iterator[EngineEvent]:
        """Every event of the request from the first, blocking until the next arrives; ends after the last
        candidate's final event (or at cancellation). Raises the request's error, if it failed, at the end."""
        index = 0
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._done or len(self._events) > index)
                events, done = self._events[index:], self._done
            yield from events
            index += len(events)
            if done and index == len(self._events):
                self._raise_failure()
                return

    async def aevents(self) -> AsyncIterator[EngineEvent]:
        """:meth:`events` for asyncio code: the worker wakes this task through its loop, nothing polls."""
        async for batch in self.abatches():
            for event in batch:
                yield event

    async def abatches(self) -> AsyncIterator[list[EngineEvent]]:
        """The events in lists: each wake-up yields everything published since the last one (never empty).

        A consumer that keeps up gets one event per list; one that falls behind (a busy server) gets several,
        so it can send them in one message instead of paying the per-message cost for each token.
        """
        listener = _AsyncListener(asyncio.get_running_loop())
        wakeup = listener.wakeup
        with self._condition:
            self._listeners.append(listener)
        try:
            index = 0
            while True:
                wakeup.clear()  # before reading, so an event published after the read still wakes us
                with self._condition:
                    events, done = self._events[index:], self._done
                if events:
                    yield events
                index += len(events)
                if done:
                    self._raise_failure()
                    return
                if not events:
                    await wakeup.wait()
        finally:
            with self._condition:
                self._listeners.remove(listener)

    def _raise_failure(self) -> None:
        if self._error is not None and not isinstance(self._error, RequestCancelled):
            raise self._error

    # The engine's side.
    def _publish(self, events: list[EngineEvent]) -> list[_AsyncListener]:
        """Add events and wake blocking consumers; return the async consumers to wake (see :func:`notify_listeners`)."""
        with self._condition:
            self._events.extend(events)
            self._condition.notify_all()
            listeners = list(self._listeners)
        if self._observer is not None:
            self._observer.published(events)
        return listeners

    def _finish(self, result: GenerationResult | None = None, error: BaseException | None = None) -> None:
        with self._condition:
            if self._done:
                return
            self._result, self._error, self._done = result, error, True
            self._finished.set()
            self._condition.notify_all()
            listeners = list(self._listeners)
        if self._observer is not None:
            self._observer.finished(result, error)
        notify_listeners(listeners)


class _AsyncListener:
    """An async consumer of a handle's events: an :class:`asyncio.Event` set on its own loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wakeup = asyncio.Event()
        self.pending = False  # a wake-up is scheduled and has not run yet

    def wake(self) -> None:
        # Cleared before the event is set: anything published after this schedules a new wake-up.
        self.pending = False
        self.wakeup.set()


def _wake_all(listeners: list[_AsyncListener]) -> None:
    for listener in listeners:
        listener.wake()


def notify_listeners(listeners: list[_AsyncListener]) -> None:
    """Wake async consumers with one ``call_soon_threadsafe`` per event loop, skipping those already due.

    Each such call writes to the loop's self-pipe; one per token per stream was the largest single cost of a
    busy server, so a decode step wakes all the streams of a loop at once.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[_AsyncListener]] = {}
    for listener in listeners:
        if not listener.pending:
            listener.pending = True
            by_loop.setdefault(listener.loop, []).append(listener)
    for loop, due in by_loop.items():
        try:
            loop.call_soon_threadsafe(_wake_all, due)
        except RuntimeError:  # the consumer's event loop is closed: it is gone, nothing to wake
            pass


@dataclass
class _Request:
    """A submitted request as the engine tracks it; ``builtin`` and ``group`` only on the batched (builtin) path."""

    handle: RequestHandle
    builtin: BuiltinRequest | None = None
    group: DecodeGroup | None = None


def check_sizes(**sizes: int) -> None:
    """Raise :class:`AigcError` naming the first size that is not an integer >= 1."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AigcError(f"{name} must be an integer >= 1, got {value!r}", param=name)


def check_request(backend: Backend, prompt: str, params: SamplingParams, max_batch_size: int) -> BuiltinRequest | None:
    """Check a request before it is queued; for the builtin backend, also encode its prompt.

    Raises:
        AigcError: invalid params, ``n`` above ``max_batch_size``, a prompt that is not a string or fills the context.
    """
    params.validate()
    if params.num_beams == 1 and params.n > max_batch_size:
        raise AigcError(f"n={params.n} is more than this engine's max_batch_size={max_batch_size}; "
                        f"ask for at most {max_batch_size} candidates", param="n")
    if isinstance(backend, BuiltinBackend):
        return backend.open_request(prompt, params)
    if not isinstance(prompt, str):
        raise AigcError(f"prompt must be a string, got {type(prompt).__name__}", param="prompt")
    return None


class Engine:
    """One engine per loaded model: a bounded queue in front of a continuously batched decode loop.

    Args:
        backend: any :class:`~aigc_studio.backends.base.Backend`; a :class:`BuiltinBackend` is batched, others
            run on a thread pool of ``max_workers``.
        max_batch_size: most rows (candidates) decoded together; a request with ``n`` candidates takes ``n``.
        max_queue: most requests waiting to start; :meth:`submit` raises :class:`EngineOverloaded` beyond it.
        max_workers: concurrent requests for a backend that cannot be batched.

    Raises:
        AigcError: a size below 1.

    The engine owns the backend's model: do not call the backend from other threads while the engine runs.
    """

    def __init__(self, backend: Backend, *, max_batch_size: int = 16, max_queue: int = 256, max_workers: int = 4) -> None:
        check_sizes(max_batch_size=max_batch_size, max_queue=max_queue, max_workers=max_workers)
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.max_workers = max_workers
        self._builtin = backend if isinstance(backend, BuiltinBackend) else None
        self._batch = DecodeBatch(backend.model, backend.tokenizer) if self._builtin is not None else None
        self._pool: ThreadPoolExecutor | None = None
        self._condition = threading.Condition()  # guards everything below, and wakes the worker
        self._queue: deque[_Request] = deque()
        self._running: dict[RequestHandle, _Request] = {}
        self._thread: threading.Thread | None = None
        self._accepting = True
        self._stopping = False
        self._drain = True
        self._last_batch_size = 0
        self._tokens_generated = 0
        self._decode_steps = 0
        self._requests_finished = 0

    def start(self) -> None:
        """Start the worker thread (idempotent; :meth:`submit` starts it too)."""
        with self._condition:
            if not self._stopping:
                self._start_worker()

    def _start_worker(self) -> None:
        """Start the worker unless it runs (called with the lock held)."""
        if self._thread is not None:
            return
        if self._builtin is not None:
            self._builtin.model.eval()  # the engine owns the model: no dropout while serving
        else:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="aigc-engine-request")
        self._thread = threading.Thread(target=self._work, name=f"aigc-engine-{self.backend.info.name}", daemon=True)
        self._thread.start()

    def submit(self, prompt: str, params: SamplingParams, *, observer: HandleObserver | None = None) -> RequestHandle:
        """Queue one prompt; returns at once with its handle.

        Args:
            observer: also told of everything the handle receives (the engine process relays it this way).

        Raises:
            AigcError: invalid params, ``n`` above ``max_batch_size``, or a prompt that fills the context
                (checked here, before queueing).
            EngineOverloaded: the queue holds ``max_queue`` requests, or the engine is shutting down.
        """
        request = _Request(RequestHandle(self, prompt, params, observer))
        request.builtin = check_request(self.backend, prompt, params, self.max_batch_size)
        handle = request.handle
        with self._condition:
            if not self._accepting:
                raise EngineOverloaded("the engine is shutting down and takes no new requests; retry on another server")
            if len(self._queue) >= self.max_queue:
                raise EngineOverloaded(f"the request queue is full ({self.max_queue} waiting); retry shortly")
            self._queue.append(request)
            self._start_worker()  # in the same critical section, so a shutdown that follows finds it running
            self._condition.notify_all()
        return handle

    def stats(self) -> EngineStats:
        """Queue depth, running requests and rows, the latest batch size, and totals since the start."""
        with self._condition:
            return EngineStats(
                queue_depth=len(self._queue),
                running_requests=len(self._running),
                running_rows=sum(len(r.group.active) if r.group is not None else r.handle.params.n
                                 for r in self._running.values()),
                last_batch_size=self._last_batch_size,
                tokens_generated=self._tokens_generated,
                decode_steps=self._decode_steps,
                requests_finished=self._requests_finished,
            )

    def shutdown(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking requests; with ``drain`` finish the running and queued ones first, else cancel them
        (their iterators end, their results raise :class:`RequestCancelled`). Waits up to ``timeout`` seconds
        for the worker to stop."""
        with self._condition:
            self._accepting = False
            self._stopping = True
            self._drain = self._drain and drain
            self._condition.notify_all()
            thread = self._thread
        if thread is None:  # never started: nothing can be queued, since submit starts the worker
            return
        thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=drain)

    # ----------------------------------------------------------------------------------------------------------
    # The worker.

    def _cancel(self, handle: RequestHandle) -> None:
        with self._condition:
            handle.cancel_requested = True
            queued = next((request for request in self._queue if request.handle is handle), None)
            if queued is not None:
                self._queue.remove(queued)
                self._requests_finished += 1
            self._condition.notify_all()
        if queued is not None:
            handle._finish(error=RequestCancelled("the request was cancelled before it started"))

    def _work(self) -> None:
        """The worker loop: admit, drop cancelled requests, run one decode step; until shut down."""
        while True:
            with self._condition:
                self._condition.wait_for(self._has_work)
                if self._stopping and not self._drain:
                    self._cancel_everything()
                    return
                if self._stopping and not self._queue and not self._running:
                    return
                admitted = self._admit()
            for request in admitted:
                self._start(request)
            if self._batch is not None:
                self._drop_cancelled()
                if self._batch.num_rows:
                    self._step()

    def _has_work(self) -> bool:
        """Whether the worker has something to do now (called with the lock held)."""
        if self._batch is not None and self._batch.num_rows:
            return True  # a decode step (or a newcomer's prefill)
        if self._stopping and (not self._drain or (not self._queue and not self._running)):
            return True  # time to stop
        if not self._queue:
            return False
        if self._batch is None:
            return len(self._running) < self.max_workers
        head = self._queue[0].handle.params
        return head.num_beams > 1 or self._batch.num_rows + head.n <= self.max_batch_size

    def _admit(self) -> list[_Request]:
        """Pop the queued requests that fit now, in order (called with the lock held)."""
        admitted = []
        if self._batch is not None:
            rows = self._batch.num_rows
            # In order: a request that does not fit yet waits, and so do those behind it (no starvation).
            while self._queue and (self._queue[0].handle.params.num_beams > 1
                                   or rows + self._queue[0].handle.params.n <= self.max_batch_size):
                request = self._queue.popleft()
                if request.handle.params.num_beams == 1:
                    rows += request.handle.params.n
                admitted.append(request)
        else:
            while self._queue and len(self._running) + len(admitted) < self.max_workers:
                admitted.append(self._queue.popleft())
        for request in admitted:
            self._running[request.handle] = request
        return admitted

    def _start(self, request: _Request) -> None:
        handle = request.handle
        if self._pool is not None:
            self._pool.submit(self._run_unbatched, request)
        elif handle.params.num_beams > 1:
            # Beam search reorders its own rows every step and cannot share a batch: run it alone, now.
            self._run_unbatched(request)
        else:
            try:
                request.group = self._batch.add([request.builtin.prompt_ids], handle.params, text_every_step=True)
            except Exception as error:  # noqa: BLE001 - reported to the request's consumers, the engine goes on
                self._finished(request, error=error)

    def _drop_cancelled(self) -> None:
        with self._condition:
            cancelled = [request for request in self._running.values() if request.handle.cancel_requested]
        for request in cancelled:
            if request.group is not None:
                self._batch.remove(request.group)
                self._finished(request, error=RequestCancelled("the request was cancelled"))

    def _step(self) -> None:
        rows = self._batch.num_rows
        try:
            updates = self._batch.step()
        except Exception as error:  # noqa: BLE001 - a bug in decoding: fail the running requests, keep serving
            with self._condition:
                failed = [request for request in self._running.values() if request.group is not None]
            self._batch = DecodeBatch(self._builtin.model, self._builtin.tokenizer)
            for request in failed:
                self._finished(request, error=error)
            return
        requests = {request.group: request for request in list(self._running.values()) if request.group is not None}
        tokens = 0
        listeners: list[_AsyncListener] = []
        for group, candidates in updates:
            request = requests[group]
            tokens += len(candidates)
            try:
                events = []
                for candidate in candidates:
                    chunk = request.builtin.chunk(candidate.candidate_index, stream_event(candidate, group.params))
                    events.append(EngineEvent(candidate.candidate_index, chunk.text, chunk.logprob, chunk.finish_reason))
                listeners.extend(request.handle._publish(events))
                if not group.active:
                    self._finished(request, result=request.builtin.result(group.outputs()[0].completions))
            except Exception as error:  # noqa: BLE001 - a bug turning tokens into text: fail this request only
                if group.active:
                    self._batch.remove(group)
                self._finished(request, error=error)
        notify_listeners(listeners)
        with self._condition:
            self._last_batch_size = rows
            self._tokens_generated += tokens
            self._decode_steps += 1 if updates else 0  # a step that only prefilled newcomers made no tokens

    def _run_unbatched(self, request: _Request) -> None:
        """One request through the backend itself: a stream when it is one candidate, else ``generate``."""
        handle, params = request.handle, request.handle.params
        try:
            if self._pool is not None and params.n == 1 and params.num_beams == 1:
                result = self._stream_unbatched(handle)
            else:
                result = self.backend.generate([handle.prompt], params)[0]
                notify_listeners(handle._publish([EngineEvent(index, candidate.text, None, candidate.finish_reason)
                                         for index, candidate in enumerate(result.candidates)]))
                with self._condition:
                    self._tokens_generated += result.completion_tokens
        except Exception as error:  # noqa: BLE001 - reported to the request's consumers
            self._finished(request, error=error)
        else:
            if result is None:
                self._finished(request, error=RequestCancelled("the request was cancelled"))
            else:
                self._finished(request, result=result)

    def _stream_unbatched(self, handle: RequestHandle) -> GenerationResult | None:
        """Stream through a non-builtin backend; the result is built from the chunks (None when cancelled).

        The protocol's chunks carry no token ids, so ``num_tokens`` counts chunks and ``prompt_tokens`` is 0.
        """
        texts, logprobs, finish_reason = [], [], None
        for chunk in self.backend.stream(handle.prompt, handle.params):
            if handle.cancel_requested:
                return None
            notify_listeners(handle._publish([EngineEvent(0, chunk.text, chunk.logprob, chunk.finish_reason)]))
            texts.append(chunk.text)
            logprobs.append(chunk.logprob)
            finish_reason = chunk.finish_reason or finish_reason
            with self._condition:
                self._tokens_generated += 1
        complete = all(logprob is not None for logprob in logprobs)
        candidate = Candidate(text="".join(texts), finish_reason=finish_reason or "stop", num_tokens=len(texts),
                              logprobs=logprobs if complete and logprobs else None)
        return GenerationResult(prompt=handle.prompt, candidates=[candidate], prompt_tokens=0)

    def _finished(self, request: _Request, *, result: GenerationResult | None = None,
                  error: BaseException | None = None) -> None:
        with self._condition:
            if self._running.pop(request.handle, None) is not None:  # not already cancelled by shutdown
                self._requests_finished += 1
            self._condition.notify_all()  # a thread-pool slot or batch rows came free
        request.handle._finish(result, error)

    def _cancel_everything(self) -> None:
        """shutdown(drain=False): cancel every queued and running request (called with the lock held)."""
        requests = list(self._queue) + list(self._running.values())
        self._queue.clear()
        self._running.clear()
        for request in requests:
            request.handle.cancel_requested = True  # stops a thread-pool stream at its next chunk
            if request.group is not None:
                self._batch.remove(request.group)
            self._requests_finished += 1
            request.handle._finish(error=RequestCancelled("the engine shut down before the request finished"))
