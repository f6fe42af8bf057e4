"""The serving engine in a process of its own, behind the interface of :class:`~aigc_studio.generation.engine.Engine`.

An engine thread in the HTTP server's process shares the interpreter lock with the event loop: each torch
call of a decode step lets the lock go, and the loop, busy with the streams of a full batch, holds it for a
while before the engine gets it back. On the 2-core machine with 16 streaming clients the engine thread spent
about a third of each step waiting for the lock and a fifth of the time between steps
(docs/benchmarks.md, "Serving under load"). :class:`EngineProcess` runs the engine in a child process over
its own copy of the model, as vLLM's engine core process does, and offers what the server uses of
:class:`Engine`: ``submit`` (returning the same :class:`RequestHandle`), ``stats``, ``start`` and ``shutdown``.

One :func:`multiprocessing.Pipe` carries pickled messages both ways: requests (an id, the prompt and its
:class:`SamplingParams`), cancellations, stats queries and the shutdown in; events, results, errors and stats
out, in lists, so a decode step of a full batch costs the child one send and the parent one wake-up of its
reader thread. Both ends are this program: nothing from outside is unpickled. The child is started with
``spawn`` (a fork of a process running torch threads is not safe) and loads the model from its directory, so
the weights are in memory twice; the parent's copy still tokenises and checks prompts and serves ``score``.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from aigc_studio.backends.base import GenerationResult
from aigc_studio.backends.builtin import BuiltinBackend
from aigc_studio.errors import AigcError
from aigc_studio.generation.decoding import model_device
from aigc_studio.generation.engine import (
    Engine,
    EngineEvent,
    EngineOverloaded,
    EngineStats,
    RequestCancelled,
    RequestHandle,
    check_request,
    check_sizes,
    notify_listeners,
)
from aigc_studio.generation.sampling_params import SamplingParams

logger = logging.getLogger("aigc_studio.engine")

START_TIMEOUT_S = 180.0  # the child imports torch and loads the model
STATS_TIMEOUT_S = 5.0
_STOP = object()  # ends the child's sender thread
_PORTABLE_ERRORS = {cls.__name__: cls for cls in (RequestCancelled, EngineOverloaded)}


def default_engine_threads() -> int:
    """Torch threads for an engine process: every core this process may use but one, which the HTTP side keeps.

    On the 2-core machine a second torch thread in the child cost the single stream about a third of its
    tokens/s (its OpenMP worker spins between parallel regions, on the core the HTTP loop needs) and gained
    nothing at 16 streams (docs/benchmarks.md, "Serving under load").
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)


class EngineProcess:
    """An :class:`Engine` over ``backend``'s model, running in a child process (see the module docstring).

    Requests in flight (queued in the child or decoding) are bounded by ``max_queue + max_batch_size``; one
    more raises :class:`EngineOverloaded` at once, as a full :class:`Engine` queue does. The child runs
    ``threads`` torch threads (None: :func:`default_engine_threads`).
    """

    def __init__(self, backend: BuiltinBackend, *, max_batch_size: int = 16, max_queue: int = 256,
                 threads: int | None = None) -> None:
        self.threads = default_engine_threads() if threads is None else threads
        check_sizes(max_batch_size=max_batch_size, max_queue=max_queue, threads=self.threads)
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self._lock = threading.Lock()  # guards the maps below, the connection's sending side and _accepting
        self._handles: dict[int, RequestHandle] = {}
        self._ids: dict[RequestHandle, int] = {}
        self._stats_waiters: dict[int, Future[EngineStats]] = {}
        self._numbers = itertools.count()
        self._accepting = True
        self._last_stats = EngineStats(0, 0, 0, 0, 0, 0, 0)
        self._process: Any = None
        self._connection: Any = None
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the child and wait until its engine runs (idempotent).

        Raises:
            AigcError: the child could not load the model or did not answer within ``timeout`` seconds.
        """
        with self._lock:
            if self._process is not None:
                return
            context = multiprocessing.get_context("spawn")
            connection, child_connection = context.Pipe()
            name = self.backend.info.name
            process = context.Process(
                target=_serve, name=f"aigc-engine-{name}", daemon=True,
                args=(child_connection, str(self.backend.loaded.directory), name, str(model_device(self.backend.model)),
                      self.backend.quantization, self.max_batch_size, self.max_queue + self.max_batch_size, self.threads),
            )
            process.start()
            child_connection.close()
            if not connection.poll(timeout):
                process.kill()
                raise AigcError(f"the engine process for {name!r} did not start within {timeout:.0f} s; "
                                "check the server log, or set server.engine_process = false")
            status = connection.recv()
            if status[0] != "ready":
                process.join(5)
                raise AigcError(f"the engine process for {name!r} failed to start: {status[1]}")
            self._process, self._connection = process, connection
            self._reader = threading.Thread(target=self._read, name=f"aigc-engine-reader-{name}", daemon=True)
            self._reader.start()

    def submit(self, prompt: str, params: SamplingParams) -> RequestHandle:
        """Queue one prompt in the child; returns at once with its handle (see :meth:`Engine.submit`).

        Raises:
            AigcError: invalid params, ``n`` above ``max_batch_size``, or a prompt that fills the context.
            EngineOverloaded: ``max_queue + max_batch_size`` requests are in flight, or the engine is stopping.
        """
        check_request(self.backend, prompt, params, self.max_batch_size)
        handle = RequestHandle(self, prompt, params)
        with self._lock:
            if not self._accepting or self._connection is None:
                raise EngineOverloaded("the engine is not running or shutting down and takes no new requests; "
                                       "retry on another server")
            if len(self._handles) >= self.max_queue + self.max_batch_size:
                raise EngineOverloaded(f"the request queue is full ({self.max_queue} waiting); retry shortly")
            number = next(self._numbers)
            self._handles[number], self._ids[handle] = handle, number
            if not self._send(("submit", number, prompt, params)):
                del self._handles[number], self._ids[handle]
                raise EngineOverloaded("the engine process has stopped; restart the server")
        return handle

    def stats(self) -> EngineStats:
        """The child engine's :meth:`Engine.stats`; the last known ones when it does not answer in time."""
        future: Future[EngineStats] = Future()
        with self._lock:
            if self._connection is None or not self._accepting:
                return self._last_stats
            number = next(self._numbers)
            self._stats_waiters[number] = future
            if not self._send(("stats", number)):
                return self._last_stats
        try:
            return future.result(STATS_TIMEOUT_S)
        except FutureTimeout:
            with self._lock:
                self._stats_waiters.pop(number, None)
            return self._last_stats

    def shutdown(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking requests; with ``drain`` the child finishes the running and queued ones, else cancels
        them; then it exits. Waits up to ``timeout`` seconds (then ends the child)."""
        with self._lock:
            stopping, self._accepting = self._accepting, False
            if self._connection is not None and stopping:
                self._send(("shutdown", drain))
        if self._reader is not None:
            self._reader.join(timeout)
        if self._process is not None:
            self._process.join(5 if timeout is None else timeout)
            if self._process.is_alive():
                self._process.kill()

    # The parent's side of the messages.

    def _cancel(self, handle: RequestHandle) -> None:
        with self._lock:
            handle.cancel_requested = True
            number = self._ids.get(handle)
            if number is not None and self._accepting:
                self._send(("cancel", number))

    def _send(self, message: tuple) -> bool:
        """Send to the child (called with the lock held); False when it is gone (the reader then fails what
        was in flight)."""
        try:
            self._connection.send(message)
        except OSError:
            self._accepting = False
            return False
        return True

    def _read(self) -> None:
        """The reader thread: hand the child's events and results to the handles, until the child stops."""
        try:
            while True:
                listeners = []
                for message in self._connection.recv():
                    kind = message[0]
                    if kind == "events":
                        handle = self._handles.get(message[1])
                        if handle is not None:
                            listeners.extend(handle._publish(message[2]))
                    elif kind == "done":
                        with self._lock:
                            handle = self._handles.pop(message[1], None)
                            self._ids.pop(handle, None)
                        if handle is not None:
                            handle._finish(message[2], _rebuilt(message[3]))
                    elif kind == "stats":
                        self._last_stats = message[2]
                        with self._lock:
                            future = self._stats_waiters.pop(message[1], None)
                        if future is not None:
                            future.set_result(message[2])
                    elif kind == "stopped":
                        return
                notify_listeners(listeners)
        except (EOFError, OSError):
            with self._lock:
                self._accepting = False
                handles, self._handles, self._ids = list(self._handles.values()), {}, {}
            if handles:
                logger.error("the engine process of %s stopped with %d requests in flight", self.backend.info.name,
                             len(handles))
            for handle in handles:
                handle._finish(error=AigcError("the engine process stopped before the request finished; "
                                               "see the server log", status=503))


class _Relay:
    """The child's observer of one request: what its handle publishes goes to the parent."""

    def __init__(self, number: int, outbox: queue.SimpleQueue, handles: dict[int, RequestHandle]) -> None:
        self.number = number
        self.outbox = outbox
        self.handles = handles

    def published(self, events: list[EngineEvent]) -> None:
        self.outbox.put(("events", self.number, events))

    def finished(self, result: GenerationResult | None, error: BaseException | None) -> None:
        self.handles.pop(self.number, None)
        self.outbox.put(("done", self.number, result, _portable(error)))


def _serve(connection: Any, directory: str, name: str, device: str, quantization: str, max_batch_size: int,
           max_queue: int, threads: int) -> None:
    """The child process: load the model, run an :class:`Engine`, and follow the parent's messages."""
    try:
        import torch

        torch.set_num_threads(threads)
        engine = Engine(BuiltinBackend.from_directory(directory, name=name, device=device, quantize=quantization),
                        max_batch_size=max_batch_size, max_queue=max_queue)
        engine.start()
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
        connection.send(("failed", str(error)))
        return
    connection.send(("ready",))
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    sender = threading.Thread(target=_send, args=(outbox, connection), name="aigc-engine-sender", daemon=True)
    sender.start()
    handles: dict[int, RequestHandle] = {}
    drain = False
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # the parent is gone: nobody reads the results
            break
        kind = message[0]
        if kind == "submit":
            _, number, prompt, params = message
            try:
                handles[number] = engine.submit(prompt, params, observer=_Relay(number, outbox, handles))
            except Exception as error:  # noqa: BLE001 - the parent checked the request; report what is left
                outbox.put(("done", number, None, _portable(error)))
        elif kind == "cancel":
            handle = handles.get(message[1])
            if handle is not None:
                handle.cancel()
        elif kind == "stats":
            outbox.put(("stats", message[1], engine.stats()))
        elif kind == "shutdown":
            drain = message[1]
            break
    engine.shutdown(drain=drain)
    outbox.put(("stopped",))
    outbox.put(_STOP)
    sender.join()


def _send(outbox: queue.SimpleQueue, connection: Any) -> None:
    """The child's sender thread: everything waiting in ``outbox`` goes out as one message."""
    while True:
        batch = [outbox.get()]
        while True:
            try:
                batch.append(outbox.get_nowait())
            except queue.Empty:
                break
        stop = batch[-1] is _STOP
        messages = [message for message in batch if message is not _STOP]
        try:
            if messages:
                connection.send(messages)
        except (OSError, ValueError):  # the parent is gone
            return
        if stop:
            return


def _portable(error: BaseException | None) -> tuple[str, str, str | None, int] | None:
    """An exception as plain values (its class name, message, param and status) for the parent."""
    if error is None:
        return None
    message = error.message if isinstance(error, AigcError) else f"{type(error).__name__}: {error}"
    return (type(error).__name__, message, getattr(error, "param", None),
            getattr(error, "status", 400) if isinstance(error, AigcError) else 500)


def _rebuilt(error: tuple[str, str, str | None, int] | None) -> BaseException | None:
    """The parent's exception for a :func:`_portable` one: the engine's own classes, else an AigcError."""
    if error is None:
        return None
    name, message, param, status = error
    if name in _PORTABLE_ERRORS:
        return _PORTABLE_ERRORS[name](message, param=param)
    if status >= 500:
        return RuntimeError(message)  # a bug in the child: the server reports it as one
    return AigcError(message, param=param, status=status)
