"""Studio routes: tasks, content generation with score cards, evaluation, and the content library."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from aigc_studio.content.tasks import TASKS
from aigc_studio.server import protocol as p
from aigc_studio.server.content_serving import ContentServing, evaluate
from aigc_studio.server.errors import ApiError
from aigc_studio.server.state import ServerState
from aigc_studio.server.streaming import SSE_HEADERS
from aigc_studio.store.library import MAX_PAGE, ContentLibrary, NewContentItem

router = APIRouter(prefix="/v1", tags=["content"], responses=p.ERROR_RESPONSES)

# Databases take OFFSET as a signed 64-bit integer; no library comes near it.
MAX_OFFSET = 2**62
EXPORT_TYPES = {"csv": ("text/csv", "csv"), "json": ("application/json", "json"), "markdown": ("text/markdown", "md")}
_COMMON_FIELDS = [
    p.TaskField(name="attributes", type="attributes", required=True, description="The facts to write from."),
    p.TaskField(name="audience", type="text", description="Who the content is for."),
    p.TaskField(name="tone", type="text", description="How it should sound."),
    p.TaskField(name="keywords", type="terms", description="Terms that must appear."),
    p.TaskField(name="forbidden_words", type="terms", description="Terms that must not appear."),
    p.TaskField(name="language", type="choice", choices=["en", "zh"], description="English or Chinese."),
    p.TaskField(name="length", type="integer", description="Target length in words (characters for Chinese)."),
    p.TaskField(name="n", type="integer", description="Candidates to generate and rank."),
]


def _state(request: Request) -> ServerState:
    return request.app.state.server


def _library(request: Request) -> ContentLibrary:
    return ContentLibrary(_state(request).database)


@router.get("/tasks", response_model=p.TaskList)
def list_tasks() -> p.TaskList:
    """The content tasks, their languages, default lengths and models, and the request fields they use."""
    return p.TaskList(data=[
        p.TaskInfo(
            name=task.name, description=task.description, languages=list(task.texts),
            default_lengths={language: list(bounds) for language, bounds in task.default_lengths.items()},
            default_models=dict(task.default_models),
            fields=_COMMON_FIELDS + ([p.TaskField(name="platform", type="text", description="The social network.")]
                                     if task.name == "social-post" else []),
        )
        for task in TASKS.values()
    ])


@router.post("/content", response_model=p.ContentResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def create_content(body: p.ContentCreateRequest, request: Request):
    """Write ``n`` candidates for a task, rank them and explain each rank; ``stream`` sends deltas then the result."""
    serving = ContentServing(_state(request), getattr(request.state, "api_key_id", None))
    if body.stream:
        return StreamingResponse(await serving.stream(body), media_type="text/event-stream", headers=SSE_HEADERS)
    return await serving.create(body)


@router.get("/content/{content_id}", response_model=p.ContentResponse)
def get_content(content_id: str, request: Request):
    """A ``/v1/content`` result by id (kept for ``server.content_retention_days``; save one to the library to keep it)."""
    body = _state(request).content_results.get(content_id)
    if body is None:
        raise ApiError(404, f"content {content_id!r} not found; results are kept for "
                            f"{_state(request).settings.server.content_retention_days} days, save one to the "
                            "library to keep it", code="content_not_found", param="content_id")
    return body


@router.post("/evaluate", response_model=p.EvaluateResponse)
def evaluate_texts(body: p.EvaluateRequest, request: Request) -> p.EvaluateResponse:
    """Score and rank texts against a task's brief (score cards as for generated candidates)."""
    return evaluate(_state(request), body)


@router.post("/library", response_model=p.LibraryItem, status_code=201)
def save_item(body: p.LibraryItemCreate, request: Request) -> p.LibraryItem:
    """Save a text (usually a picked, edited candidate) to the library."""
    extra: dict = {}
    if body.content_id is not None:
        source = _state(request).content_results.get(body.content_id)
        extra["request"] = {"content_id": body.content_id, **((source or {}).get("request") or {})}
        if source is not None:
            best = next((c for c in source["candidates"] if c["text"] == body.text), None)
            extra["scores"] = {"score": best["score"], "scores": best["scores"]} if best else None
            extra["audit_record_id"] = (source.get("provenance") or {}).get("record_id")
    item = NewContentItem(task=body.task, title=body.title, text=body.text, tags=body.tags, language=body.language, **extra)
    return p.LibraryItem.from_info(_library(request).save(item))


@router.get("/library", response_model=p.LibraryList)
def search_library(request: Request, q: str | None = None, tag: str | None = None, task: str | None = None,
                   limit: int = Query(20, ge=1, le=MAX_PAGE), offset: int = Query(0, ge=0, le=MAX_OFFSET)) -> p.LibraryList:
    """Items whose title or text contains every term of ``q``, newest change first, with the total for paging."""
    library = _library(request)
    items = library.search(q, tag=tag, task=task, limit=limit, offset=offset)
    return p.LibraryList(data=[p.LibraryItem.from_info(info) for info in items], total=library.count(q, tag=tag, task=task))


@router.get("/library/export", response_class=Response, responses={200: {"content": {"text/csv": {}, "text/markdown": {}}}})
def export_library(request: Request, format: Literal["csv", "json", "markdown"] = "json", q: str | None = None,
                   tag: str | None = None, task: str | None = None) -> Response:
    """Every matching item as a CSV, JSON or Markdown download."""
    library = _library(request)
    items, offset = [], 0
    while page := library.search(q, tag=tag, task=task, limit=MAX_PAGE, offset=offset):
        items.extend(page)
        offset += len(page)
    media_type, extension = EXPORT_TYPES[format]
    return Response(library.export(items, format), media_type=f"{media_type}; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="aigc-library.{extension}"'})


@router.get("/library/{item_id}", response_model=p.LibraryItem)
def get_item(item_id: str, request: Request) -> p.LibraryItem:
    """One library item."""
    return p.LibraryItem.from_info(_library(request).get(item_id))


@router.patch("/library/{item_id}", response_model=p.LibraryItem)
def update_item(item_id: str, body: p.LibraryItemUpdate, request: Request) -> p.LibraryItem:
    """Change an item's title, text or tags."""
    return p.LibraryItem.from_info(_library(request).update(item_id, text=body.text, title=body.title, tags=body.tags))


@router.delete("/library/{item_id}", status_code=204, response_class=Response)
def delete_item(item_id: str, request: Request) -> Response:
    """Remove an item."""
    _library(request).delete(item_id)
    return Response(status_code=204)

