"""OpenAI-compatible routes: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from aigc_studio.server import protocol as p
from aigc_studio.server.openai_serving import OpenAIServing
from aigc_studio.server.state import ServerState
from aigc_studio.server.streaming import SSE_HEADERS

router = APIRouter(prefix="/v1", tags=["openai"], responses=p.ERROR_RESPONSES)


def _serving(request: Request) -> OpenAIServing:
    return OpenAIServing(request.app.state.server, getattr(request.state, "api_key_id", None))


@router.get("/models", response_model=p.ModelList)
def list_models(request: Request) -> p.ModelList:
    """The loaded models, in OpenAI's list shape (plus kind, backend, prompt format, context and weights hash);
    text models first, then image models (kind ``image``, with their categories)."""
    state: ServerState = request.app.state.server
    return p.ModelList(data=[
        *(p.ModelCard(id=name, created=model.created, backend=model.backend.info.backend,
                      prompt_format=model.backend.info.prompt_format, context_length=model.backend.info.context_length,
                      model_type=model.backend.info.model_type, weights_sha256=model.backend.info.weights_sha256)
          for name, model in state.models.items()),
        *(p.ModelCard(id=name, created=model.created, backend="image", prompt_format=None, context_length=None,
                      model_type=model.sketch.model_type, weights_sha256=model.sketch.weights_sha256, kind="image",
                      class_names=model.sketch.class_names)
          for name, model in state.image_models.items()),
    ])


@router.post("/completions", response_model=p.CompletionResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
async def create_completion(body: p.CompletionRequest, request: Request):
    """Continue a prompt (a records model: write from an attributes string); ``stream`` sends SSE chunks."""
    result = await _serving(request).completion(body)
    if isinstance(result, p.CompletionResponse):
        return result
    return StreamingResponse(result, media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/chat/completions", response_model=p.ChatCompletionResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
async def create_chat_completion(body: p.ChatCompletionRequest, request: Request):
    """Answer a conversation (see docs/serving.md for how each model kind reads it); ``stream`` sends SSE chunks."""
    result = await _serving(request).chat(body)
    if isinstance(result, p.ChatCompletionResponse):
        return result
    return StreamingResponse(result, media_type="text/event-stream", headers=SSE_HEADERS)
