"""The model registry: what a model name means, and the backend that serves it.

A name is looked up in this order:

1. a ``[models.NAME]`` table of ``aigc.toml`` (:class:`~aigc_studio.settings.ModelSettings`): a builtin model
   directory, a local transformers model directory, or a model behind an OpenAI-compatible server;
2. a directory: a builtin model when its ``config.json`` has one of our model types (``aigc-gpt``,
   ``aigc-lstm``), an image model when it is one of our image types (``aigc-vae``, ``aigc-gan``,
   ``aigc-diffusion``), else a transformers model (an exported Llama directory, a downloaded Qwen, ...);
3. a bundled model (``e2e-copy``, ``fashion-sketch``).

Text models load as :class:`~aigc_studio.backends.base.Backend` (:func:`load_backend`); image generators are
of kind ``image`` (:func:`model_kind`) and load as a :class:`~aigc_studio.images.pipeline.SketchModel`
(:func:`load_image_generator`), which ``aigc sketch`` and ``POST /v1/images/generations`` sample from.

::

    backend = load_backend("e2e-copy")                       # bundled
    backend = load_backend("qwen", load_settings())          # [models.qwen] in aigc.toml
    for entry in list_models(load_settings()): print(entry.name, entry.backend)
    sketcher = load_image_generator("fashion-sketch")          # an image model: kind "image"

The CLI (``--model``), the content pipeline's callers and the server (``GET /v1/models``) all go through
:func:`load_backend` and :func:`list_models`, so a name means the same thing everywhere.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aigc_studio.backends.base import Backend
from aigc_studio.errors import AigcError
from aigc_studio.generation.sampling_params import SamplingParams
from aigc_studio.models.model_dir import IMAGE_MODEL_TYPES, weights_sha256
from aigc_studio.models.registry import bundled_models, resolve_model
from aigc_studio.settings import ModelSettings, Settings, load_settings

if TYPE_CHECKING:
    from aigc_studio.images.pipeline import SketchModel

BUILTIN_MODEL_TYPES = ("aigc-gpt", "aigc-lstm")
# The image classifier (aigc-image-classifier) is an image model too, but judges sketches rather than drawing them.
IMAGE_CLASSIFIER_TYPE = "aigc-image-classifier"
IMAGE_GENERATOR_TYPES = tuple(kind for kind in IMAGE_MODEL_TYPES if kind != IMAGE_CLASSIFIER_TYPE)
# config.json "format" of an intent router (aigc_studio.support.intents.FORMAT; not imported: it pulls in scipy).
INTENT_ROUTER_FORMAT = "aigc-intent-router"


@dataclass(frozen=True)
class ModelEntry:
    """One model the registry knows, described without loading its weights.

    Attributes:
        name: what ``--model`` and the API's ``model`` field take.
        backend: ``builtin``, ``transformers``, ``openai``, ``image`` (a sketch generator or classifier) or
            ``intents`` (an intent router).
        location: its directory or server URL.
        prompt_format: ``records`` (compact source) or ``text`` (instruction prompt); None when unknown or an
            image model.
        context_length: prompt + completion tokens; None when unknown (a remote model not asked yet) or an
            image model.
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
                 quantize: str | None = None, check: bool = True) -> Backend:
    """The backend for a model name (see the module docstring for the lookup order).

    Args:
        name_or_path: a ``[models.NAME]`` name, a model directory or a bundled model's name.
        settings: the installation's settings; None reads them.
        device: overrides the model's ``device`` setting (builtin and transformers models); None keeps it
            (``cpu`` by default).
        quantize: overrides the model's ``quantize`` setting (``none`` or ``int8``; builtin and transformers
            models on the CPU); None keeps it.
        check: ask an OpenAI-compatible server for its models first, so an unreachable server, a refused key
            or an unknown model name is reported now rather than at the first request.

    Raises:
        AigcError: an unknown name (the message lists the known ones), a model that does not load, or a
            server that does not answer as it should.
    """
    settings = settings or load_settings()
    name = str(name_or_path)
    kind = model_kind(name_or_path, settings)
    if kind == "image":
        raise AigcError(f"model {name!r} is an image model; draw with it through `aigc sketch --model {name}` or "
                        "POST /v1/images/generations, not a text endpoint", param="model")
    if kind == "intents":
        raise AigcError(f"model {name!r} is an intent router, not a text generator; use it with `aigc support "
                        f"classify --model {name}` or [support] router_dir", param="model")
    if name in settings.models:
        return _load(name, settings.models[name], device=device, quantize=quantize, check=check)
    path = Path(name_or_path)
    if path.is_dir():
        spec = ModelSettings(backend=detect_backend(path), path=str(path))
        return _load(path.name, spec, device=device, quantize=quantize, check=check)
    if name in bundled_models():
        return _load(name, ModelSettings(path=name), device=device, quantize=quantize, check=check)
    if path.exists():
        raise AigcError(f"model {name!r} is a file, not a model directory; pass the directory that holds config.json",
                        param="model")
    known = [*settings.models, *(model for model in bundled_models() if model not in settings.models)]
    raise AigcError(f"model {name!r} not found: no [models.{name}] in aigc.toml, no such directory and no bundled model "
                    f"(known: {', '.join(known) or 'none'}); pass a model directory written by `aigc train` or add "
                    "a [models.NAME] table", param="model", status=404)


def model_kind(name_or_path: str | Path, settings: Settings | None = None) -> Literal["text", "image", "intents"]:
    """``image`` when the name (a ``[models.NAME]`` table, a directory or a bundled name) is one of our image
    models (its config.json says ``aigc-vae``, ``aigc-gan``, ``aigc-diffusion`` or ``aigc-image-classifier``),
    ``intents`` when it is an intent router (``aigc support train-intents``, the bundled ``banking-intents``),
    else ``text``. Names that point nowhere are ``text``: :func:`load_backend` then reports them."""
    settings = settings or load_settings()
    name = str(name_or_path)
    if name in settings.models:
        spec = settings.models[name]
        if spec.backend != "builtin":
            return "text"
        name_or_path = spec.path or name
    try:
        directory = resolve_model(name_or_path)
    except AigcError:
        return "text"
    config = directory / "config.json"
    try:
        values = _read_json(config) if config.is_file() else {}
    except AigcError:
        return "text"  # a broken config.json is reported by whichever loader the caller picks
    if values.get("model_type") in IMAGE_MODEL_TYPES:
        return "image"
    return "intents" if values.get("format") == INTENT_ROUTER_FORMAT else "text"


def load_image_generator(name_or_path: str | Path, settings: Settings | None = None) -> SketchModel:
    """The image generator behind a ``[models.NAME]`` table, a directory or a bundled name, named as given.

    Raises:
        AigcError: an unknown name, a text model, the image classifier (it judges, it does not draw), or
            broken model files.
    """
    from aigc_studio.images.pipeline import load_sketch_model

    settings = settings or load_settings()
    name = str(name_or_path)
    spec = settings.models.get(name)
    if spec is not None and spec.backend != "builtin":
        raise AigcError(f"model {name!r} is a {spec.backend} model, not an image model", param="model")
    directory = resolve_model(spec.path if spec is not None and spec.path else name_or_path)
    model_type = _read_json(directory / "config.json").get("model_type")
    if model_type == IMAGE_CLASSIFIER_TYPE:
        raise AigcError(f"model {name!r} is the image classifier that judges sketches (`aigc eval images "
                        "--classifier`), not a generator; serve a VAE, GAN or diffusion model", param="model")
    if model_type not in IMAGE_GENERATOR_TYPES:
        raise AigcError(f"model {name!r} is not an image model (model_type {model_type!r}); image generators are "
                        f"{', '.join(IMAGE_GENERATOR_TYPES)}", param="model")
    loaded = load_sketch_model(directory)
    # served under the name asked for; a directory by its last part, as load_backend names text models
    served_name = directory.name if spec is None and Path(name).is_dir() else name
    return dataclasses.replace(loaded, name=served_name)


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
    """``builtin`` for a text model of ours (its config.json names one of our model types), ``image`` for one of
    our image models, else ``transformers``.

    Raises:
        AigcError: no config.json in the directory.
    """
    model_type = _read_json(Path(directory) / "config.json").get("model_type")
    if model_type in IMAGE_MODEL_TYPES:
        return "image"
    return "builtin" if model_type in BUILTIN_MODEL_TYPES else "transformers"


# -- loading -------------------------------------------------------------------------------------------------------


def _load(name: str, spec: ModelSettings, *, device: str | None, quantize: str | None, check: bool) -> Backend:
    device = device or spec.device
    quantize = quantize or spec.quantize
    if spec.backend == "openai" and quantize != "none":
        raise AigcError(f"model {name!r} runs on an OpenAI-compatible server; quantize it there, not with quantize",
                        param="quantize")
    if spec.backend == "builtin":
        from aigc_studio.backends.builtin import BuiltinBackend

        backend = BuiltinBackend.from_directory(resolve_model(spec.path), name=name, device=device, quantize=quantize)
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
                                                  prompt_format=spec.prompt_format, context_length=spec.context_length,
                                                  quantize=quantize)
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
        if config.get("model_type") in IMAGE_MODEL_TYPES:
            digest = weights_sha256(directory) if with_hashes else ""
            return ModelEntry(name, "image", str(directory), None, None, digest, source)
        if config.get("format") == INTENT_ROUTER_FORMAT:
            digest = weights_sha256(directory) if with_hashes else ""
            return ModelEntry(name, "intents", str(directory), None, None, digest, source)
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
