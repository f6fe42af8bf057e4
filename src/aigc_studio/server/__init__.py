"""The HTTP server: an OpenAI-compatible API, the studio's content and library API, and the web studio.

``aigc serve`` runs :func:`aigc_studio.server.app.create_app` under uvicorn; docs/serving.md has the endpoints.
"""
