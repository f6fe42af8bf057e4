"""The API's routers: OpenAI-compatible generation, studio content and library, safety."""
