"""Server-sent events and the async plumbing between engine handles, worker threads and responses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pydantic import BaseModel

from aigc_studio.server.errors import exception_to_error

DONE = "data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of the stream


def sse(data: BaseModel | dict[str, Any]) -> str:
    """One ``data:`` event."""
    text = data.model_dump_json(exclude_none=False) if isinstance(data, BaseModel) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n"


def sse_error(error: Exception) -> str:
    """The error body as an event, for failures after the stream has started (the status is already 200)."""
    _, body, _ = exception_to_error(error)
    return sse(body)


async def merged_batches(handles: Sequence[Any]) -> AsyncIterator[list[tuple[int, Any]]]:
    """``(handle index, event)`` pairs from several engine handles, in lists of everything that has arrived;
    cancels the handles if left early.

    A consumer that keeps up gets small lists; one that falls behind gets everything since its last read
    at once, which it can send as one message (see :meth:`RequestHandle.abatches`).

    Raises:
        Exception: whatever a handle's event iterator raised.
    """
    if len(handles) == 1:  # the common case needs no queue and no extra task per token
        try:
            async for batch in handles[0].abatches():
                yield [(0, event) for event in batch]
        finally:
            handles[0].cancel()
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    finished = object()

    async def pump(index: int, handle: Any) -> None:
        try:
            async for batch in handle.abatches():
                queue.put_nowait((index, batch))
            queue.put_nowait((index, finished))
        except Exception as error:  # handed to the consumer, which re-raises it
            queue.put_nowait((index, error))

    tasks = [asyncio.create_task(pump(index, handle)) for index, handle in enumerate(handles)]
    try:
        remaining = len(handles)
        while remaining:
            arrived = [await queue.get()]
            while not queue.empty():
                arrived.append(queue.get_nowait())
            merged: list[tuple[int, Any]] = []
            for index, item in arrived:
                if item is finished:
                    remaining -= 1
                elif isinstance(item, Exception):
                    raise item
                else:
                    merged.extend((index, event) for event in item)
            if merged:
                yield merged
    finally:
        for task in tasks:
            task.cancel()
        for handle in handles:
            handle.cancel()


def coalesced(batch: list[tuple[int, Any]], choice_index: Callable[[int, Any], int]) -> list[tuple[int, list[Any]]]:
    """Group a batch of ``(handle index, event)`` pairs by choice, in order of first appearance.

    Returns:
        ``(choice index, events)`` pairs; each choice's events in the order they were made, so their texts
        join and their logprobs concatenate into one stream chunk.
    """
    grouped: dict[int, list[Any]] = {}
    for handle_index, event in batch:
        grouped.setdefault(choice_index(handle_index, event), []).append(event)
    return list(grouped.items())
