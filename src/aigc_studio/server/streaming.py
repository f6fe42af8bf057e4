"""Server-sent events and the async plumbing between engine handles, worker threads and responses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
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


async def merged_events(handles: Sequence[Any]) -> AsyncIterator[tuple[int, Any]]:
    """``(handle index, event)`` from several engine handles as the events come; cancels them all if left early.

    Raises:
        Exception: whatever a handle's event iterator raised.
    """
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    finished = object()

    async def pump(index: int, handle: Any) -> None:
        try:
            async for event in handle.aevents():
                await queue.put((index, event))
            await queue.put((index, finished))
        except Exception as error:  # handed to the consumer, which re-raises it
            await queue.put((index, error))

    tasks = [asyncio.create_task(pump(index, handle)) for index, handle in enumerate(handles)]
    try:
        remaining = len(handles)
        while remaining:
            index, item = await queue.get()
            if item is finished:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        for handle in handles:
            handle.cancel()
