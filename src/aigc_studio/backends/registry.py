"""The model registry: what a model name means, and the backend that serves it.

A name is looked up in this order:

1. a ``[models.NAME]`` table of ``aigc.toml`` (:class:`~aigc_studio.settings.ModelSettings`): a builtin model
   directory, a local transformers model directory, or a model behind an OpenAI-compatible server;
2. a directory: a builtin model when its ``config.json`` has one of our model types (``aigc-gpt``,
   ``aigc-lstm``), else a transformers model (an exported Llama directory, a downloaded Qwen, ...);
3. a bundled model (``e2e-copy``).

::

    backend = load_backend("e2e-copy")                       # bundled
    backend = load_backend("qwen", load_settings())          # [models.qwen] in aigc.toml
    for entry in list_models(load_settings()): print(entry.name, entry.backend)

The CLI (``--model``), the content pipeline's callers and the server (``GET /v1/models``) all go through
:func:`load_backend` and :func:`list_models`, so a name means the same thing everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigc_studio.backends.base import Backend
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.model_dir import weights_sha256
from aigc_studio.models.registry import bundled_models, resolve_model
from aigc_studio.settings import ModelSettings, Settings, load_settings

BUILTIN_MODEL_TYPES = ("aigc-gpt", "aigc-lstm")


@dataclass(frozen=True)
class ModelEntry:
    """One model the registry knows, described without loading its weights.

    Attributes:
        name: what ``--model`` and the API's ``model`` field take.
        backend: ``builtin``, ``transformers`` or ``openai``.
        location: its directory or server URL.
        prompt_format: ``records`` (compact source) or ``text`` (instruction prompt); None when unknown.
        context_length: prompt + completion tokens; None when unknown (a remote model not asked yet).
        weights_sha256: the weights' hash (see :func:`~aigc_studio.backends.transformers.weights_digest`); empty for
            remote models or when hashes were not asked for.
        source: ``aigc.toml`` or ``bundled``.
        problem: why it cannot load now (a missing directory), else None.
    """

    name: str
    backend: str
    location: str
    prompt_format: str | None
    context_length: int | None
    weights_sha256: str
    source: str
    problem: str | None = None


def list_models(settings: Settings | None = None, *, with_hashes: bool = True) -> list[ModelEntry]:
    """Every model of ``aigc.toml``, then every bundled model that no table of that name hides.

    Args:
        settings: the installation's settings; None reads them.
        with_hashes: hash the weights (reads every weights file once; large models take seconds).

    Returns:
        The entries, configured ones first in file order.
    """
    settings = settings or load_settings()
    entries = [_describe(name, spec, "aigc.toml", with_hashes) for name, spec in settings.models.items()]
    entries += [_describe(name, ModelSettings(path=name), "bundled", with_hashes)
                for name in bundled_models() if name not in settings.models]
    return entries


def load_backend(name_or_path: str | Path, settings: Settings | None = None, *, device: str | None = None,
                 check: bool = True) -> Backend:
    """The backend for a model name (see the module docstring for the lookup order).

    Args:
        name_or_path: a ``[models.NAME]`` name, a model directory or a bundled model's name.
        settings: the installation's settings; None reads them.
        device: overrides the model's ``device`` setting (builtin and transformers models); None keeps it
            (``cpu`` by default).
        check: ask an OpenAI-compatible server for its models first, so an unreachable server, a refused key
            or an unknown model name is reported now rather than at the first request.

    Raises:
        AigcError: an unknown name (the message lists the known ones), a model that does not load, or a
            server that does not answer as it should.
    """
    settings = settings or load_settings()
    name = str(name_or_path)
    if name in settings.models:
        return _load(name, settings.models[name], device=device, check=check)
    path = Path(name_or_path)
    if path.is_dir():
        spec = ModelSettings(backend=detect_backend(path), path=str(path))
        return _load(path.name, spec, device=device, check=check)
    if name in bundled_models():
        return _load(name, ModelSettings(path=name), device=device, check=check)
    if path.exists():
        raise AigcError(f"model {name!r} is a file, not a model directory; pass the directory that holds config.json",
                        param="model")
    known = [*settings.models, *(model for model in bundled_models() if model not in settings.models)]
    raise AigcError(f"model {name!r} not found: no [models.{name}] in aigc.toml, no such directory and no bundled model "
                    f"(known: {', '.join(known) or 'none'}); pass a model directory written by `aigc train` or add "
                    "a [models.NAME] table", param="model", status=404)


def default_params(backend: Backend) -> SamplingParams:
    """The backend's default sampling values (a model's generation config), or plain :class:`SamplingParams`."""
    defaults = getattr(backend, "default_params", None)
    return defaults() if callable(defaults) else SamplingParams()


def builtin_model_directory(name_or_path: str | Path, settings: Settings | None = None) -> Path:
    """The directory of a builtin model given by registry name, directory or bundled name (``aigc export``).

    Raises:
        AigcError: the name is not known, or it names a transformers or openai model.
    """
    settings = settings or load_settings()
    name = str(name_or_path)
    spec = settings.models.get(name)
    if spec is not None and spec.backend != "builtin":
        raise AigcError(f"model {name!r} is a {spec.backend} model; only builtin models (trained here) can be exported",
                        param="model")
    directory = resolve_model(spec.path if spec is not None else name_or_path)
    if detect_backend(directory) != "builtin":
        raise AigcError(f"{directory} is not a model trained here (config.json has no aigc model_type); only builtin "
                        "models can be exported", param="model")
    return directory


def detect_backend(directory: str | Path) -> str:
    """``builtin`` for a directory of ours (its config.json names one of our model types), else ``transformers``.

    Raises:
        AigcError: no config.json in the directory.
    """
    model_type = _read_json(Path(directory) / "config.json").get("model_type")
    return "builtin" if model_type in BUILTIN_MODEL_TYPES else "transformers"


# -- loading -------------------------------------------------------------------------------------------------------


def _load(name: str, spec: ModelSettings, *, device: str | None, check: bool) -> Backend:
    device = device or spec.device
    if spec.backend == "builtin":
        from aigc_studio.backends.builtin import BuiltinBackend

        backend = BuiltinBackend.from_directory(resolve_model(spec.path), name=name, device=device)
        if spec.prompt_format is not None and spec.prompt_format != backend.info.prompt_format:
            raise AigcError(f"[models.{name}] sets prompt_format = {spec.prompt_format!r}, but the model was trained on "
                            f"{backend.info.prompt_format!r} prompts; remove prompt_format for builtin models",
                            param="prompt_format")
        return backend
    if spec.backend == "transformers":
        from aigc_studio.backends.transformers import TransformersBackend

        directory = Path(spec.path)
        if not directory.is_dir():
            raise AigcError(f"model {name!r}: directory {directory} not found; download the model there first "
                            "(e.g. `hf download ORG/MODEL --local-dir DIR`)", param="model")
        return TransformersBackend.from_directory(directory, name=name, device=device, dtype=spec.dtype,
                                                  prompt_format=spec.prompt_format, context_length=spec.context_length)
    from aigc_studio.backends.openai_compat import OpenAICompatBackend

    backend = OpenAICompatBackend(name=name, base_url=spec.url, model=spec.model, api_key_env=spec.api_key_env,
                                  api=spec.api, prompt_format=spec.prompt_format or "text",
                                  context_length=spec.context_length, timeout=spec.timeout, max_retries=spec.max_retries)
    if check:
        backend.check()
    return backend


# -- listing -------------------------------------------------------------------------------------------------------


def _describe(name: str, spec: ModelSettings, source: str, with_hashes: bool) -> ModelEntry:
    if spec.backend == "openai":
        return ModelEntry(name, "openai", spec.url or "", spec.prompt_format or "text", spec.context_length, "", source)
    try:
        directory = resolve_model(spec.path) if spec.backend == "builtin" else Path(spec.path)
        if not directory.is_dir():
            raise AigcError(f"directory {directory} not found")
        config = _read_json(directory / "config.json")
        extra = _read_json(directory / "generation_config.json") if (directory / "generation_config.json").is_file() else {}
        if spec.backend == "builtin":
            prompt_format = extra.get("prompt_format", "records")
            context = extra.get("max_length") or config.get("block_size")
            digest = weights_sha256(directory) if with_hashes else ""
        else:
            from aigc_studio.backends.transformers import config_context_length, weights_digest

            prompt_format = spec.prompt_format or extra.get("prompt_format", "text")
            context = spec.context_length or config_context_length(directory)
            weights = sorted(directory.glob("*.safetensors"))
            digest = weights_digest(weights) if with_hashes and weights else ""
    except AigcError as error:
        return ModelEntry(name, spec.backend, spec.path or "", spec.prompt_format, spec.context_length, "", source,
                          problem=str(error))
    return ModelEntry(name, spec.backend, str(directory), prompt_format, context, digest, source)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise AigcError(f"{path.parent} has no config.json; is it a model directory?", param="model")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AigcError(f"{path} is not valid JSON ({error}); fix or re-export the model", param="model") from None
    if not isinstance(data, dict):
        raise AigcError(f"{path} must hold a JSON object", param="model")
    return data
