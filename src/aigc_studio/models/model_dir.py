"""Model directories in the Hugging Face layout: save a trained model, load it back, check every file.

A model directory holds::

    config.json              the model's config dataclass fields + model_type + architectures + torch_dtype
    model.safetensors        the weights (a tied matrix stored once)
    tokenizer.json           the HF tokenizers file the model was trained with
    generation_config.json   special token ids, prompt format, context length and default sampling values
    README.md                the model card: data, licence, recipe command, parameter count, metrics

``save_pretrained`` and ``load_pretrained`` are symmetric; every file is written atomically, and loading
names exactly what is missing or wrong instead of failing deep inside PyTorch.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from aigc_studio.data.tokenizer import BOS, EOS, PAD, SEP, SPECIAL_TOKENS, TextTokenizer
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write, atomic_write_json, atomic_write_with, sha256_file
from aigc_studio.models.classifier import ClassifierConfig, ImageClassifier
from aigc_studio.models.diffusion import DiffusionConfig, UNet
from aigc_studio.models.gan import GAN, GANConfig
from aigc_studio.models.gpt import GPT, GPTConfig
from aigc_studio.models.lstm import LSTMConfig, LSTMLanguageModel
from aigc_studio.models.vae import VAE, VAEConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
GENERATION_CONFIG_FILE = "generation_config.json"
CARD_FILE = "README.md"
MODEL_DIR_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, GENERATION_CONFIG_FILE, CARD_FILE)

# model_type -> (model class, config class); a new model family registers here in one line.
MODEL_TYPES: dict[str, tuple[type[nn.Module], type]] = {
    GPT.model_type: (GPT, GPTConfig),
    LSTMLanguageModel.model_type: (LSTMLanguageModel, LSTMConfig),
    VAE.model_type: (VAE, VAEConfig),
    GAN.model_type: (GAN, GANConfig),
    UNet.model_type: (UNet, DiffusionConfig),
    ImageClassifier.model_type: (ImageClassifier, ClassifierConfig),
}
# Image models: a directory holds config.json, model.safetensors and README.md only (no tokenizer).
IMAGE_MODEL_TYPES: tuple[str, ...] = (VAE.model_type, GAN.model_type, UNet.model_type, ImageClassifier.model_type)
IMAGE_MODEL_DIR_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)
# Keys config.json carries for Hugging Face tools next to the config dataclass fields.
_CONFIG_METADATA_KEYS = ("model_type", "architectures", "torch_dtype")


@dataclass
class GenerationConfig:
    """How the model is prompted and sampled by default; written as ``generation_config.json``."""

    # special token ids (docs/architecture.md: the tokenizer reserves them in this order)
    bos_token_id: int = SPECIAL_TOKENS.index(BOS)
    eos_token_id: int = SPECIAL_TOKENS.index(EOS)
    pad_token_id: int = SPECIAL_TOKENS.index(PAD)
    sep_token_id: int = SPECIAL_TOKENS.index(SEP)
    # "records": prompts are `<bos> source <sep>` and stop at <eos>; "text": `<bos> prompt` continues.
    prompt_format: Literal["records", "text"] = "records"
    max_length: int | None = None  # prompt + generated tokens; None = the model's block_size (save fills it)
    # default sampling values (OpenAI/vLLM names, as in generation.SamplingParams)
    temperature: float = 1.0
    top_k: int = 0  # 0 keeps every token
    top_p: float = 1.0
    max_tokens: int = 128
    repetition_penalty: float = 1.0
    num_beams: int = 1
    # record slots the model was trained with as placeholders (content.delexicalize); the backend swaps them
    delexicalized_slots: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.prompt_format not in ("records", "text"):
            raise AigcError(f"prompt_format must be 'records' or 'text', got {self.prompt_format!r}", param="prompt_format")
        checks = {
            "max_length": self.max_length is None or self.max_length > 0,
            "temperature": self.temperature >= 0,
            "top_k": self.top_k >= 0,
            "top_p": 0 < self.top_p <= 1,
            "max_tokens": self.max_tokens > 0,
            "repetition_penalty": self.repetition_penalty > 0,
            "num_beams": self.num_beams >= 1,
        }
        allowed = {"max_length": "> 0 or null", "temperature": ">= 0", "top_k": ">= 0 (0 disables it)",
                   "top_p": "in (0, 1]", "max_tokens": "> 0", "repetition_penalty": "> 0", "num_beams": ">= 1"}
        for name, ok in checks.items():
            if not ok:
                raise AigcError(f"{name}={getattr(self, name)} is out of range; it must be {allowed[name]}", param=name)


@dataclass
class ModelCard:
    """What a model is and where it came from; rendered as ``README.md`` with YAML front matter."""

    name: str
    description: str = ""
    data_description: str = ""
    data_sha256: dict[str, str] = field(default_factory=dict)  # training input file -> sha256, for provenance
    license: str = "other"  # a Hugging Face licence id such as "cc-by-sa-4.0"; "other" when unknown
    recipe: str = ""  # the command that trained the model, e.g. "aigc train --recipe recipes/e2e-gpt.toml"
    num_parameters: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str = "text-generation"  # the Hugging Face task; image generators use "unconditional-image-generation"

    def to_markdown(self) -> str:
        """The card as Markdown: YAML front matter (licence, library, tags) and then readable sections."""
        # JSON strings are valid YAML double-quoted scalars, so any text is quoted safely without a YAML library.
        tags = ["aigc-studio", *self.tags]
        lines = ["---", f"license: {json.dumps(self.license)}", "library_name: aigc-studio",
                 f"pipeline_tag: {self.pipeline_tag}", "tags:", *(f"- {json.dumps(tag, ensure_ascii=False)}" for tag in tags),
                 "---", "", f"# {self.name}", ""]
        if self.description:
            lines += [self.description, ""]
        if self.num_parameters is not None:
            lines += [f"Parameters: {self.num_parameters:,}", ""]
        lines += ["## Training data", "", self.data_description or "Not described.", ""]
        if self.data_sha256:
            rows = [f"| {name} | `{digest}` |" for name, digest in self.data_sha256.items()]
            lines += ["| file | sha256 |", "| --- | --- |", *rows, ""]
        if self.recipe:
            lines += ["## Recipe", "", "```bash", self.recipe, "```", ""]
        if self.metrics:
            lines += ["## Metrics", "", "| metric | value |", "| --- | --- |",
                      *(f"| {name} | {value:.4g} |" for name, value in self.metrics.items()), ""]
        lines += ["## Licence", "", f"`{self.license}`", ""]
        return "\n".join(lines)


@dataclass
class LoadedModel:
    """Everything :func:`load_pretrained` reads from a model directory."""

    model: nn.Module
    tokenizer: TextTokenizer
    generation_config: GenerationConfig
    config_dict: dict[str, Any]  # config.json as written (model_type included)
    directory: Path


def save_pretrained(
    model: nn.Module,
    tokenizer: TextTokenizer,
    directory: str | Path,
    *,
    generation_config: GenerationConfig,
    card: ModelCard | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` and everything needed to use it as a model directory; every file atomically.

    Args:
        model: a model registered in :data:`MODEL_TYPES`.
        tokenizer: the tokenizer it was trained with.
        directory: created if missing; existing files are replaced.
        generation_config: prompting and sampling defaults; a None ``max_length`` becomes the model's block_size.
        card: the model card; None writes a minimal one named after the directory.
        dtype: store floating-point weights in this dtype (e.g. torch.float16 to halve the file); None keeps theirs.

    Returns:
        The directory.

    Raises:
        AigcError: the tokenizer has more tokens than the model embeds, or ``max_length`` exceeds the block size.
    """
    directory = Path(directory)
    config = model.config
    if tokenizer.vocab_size > config.vocab_size:
        raise AigcError(f"tokenizer has {tokenizer.vocab_size} tokens but the model embeds only {config.vocab_size}; "
                        "build the model with vocab_size >= the tokenizer's", param="vocab_size")
    if generation_config.max_length is None:
        generation_config = replace(generation_config, max_length=config.block_size)
    elif generation_config.max_length > config.block_size:
        raise AigcError(f"generation max_length={generation_config.max_length} exceeds the model's "
                        f"block_size={config.block_size}; lower it", param="max_length")
    tensors = _weights_to_save(model, dtype)
    stored_dtype = next(tensor.dtype for tensor in tensors.values() if tensor.is_floating_point())
    card = card if card is not None else ModelCard(name=directory.name)
    if card.num_parameters is None:
        card = replace(card, num_parameters=model.num_parameters())
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_with(directory / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    tokenizer.save(directory / TOKENIZER_FILE)
    atomic_write_json(directory / GENERATION_CONFIG_FILE, asdict(generation_config))
    atomic_write(directory / CARD_FILE, card.to_markdown())
    # config.json last: a directory interrupted before it is reported as incomplete, not half-loaded.
    atomic_write_json(directory / CONFIG_FILE, {
        "model_type": model.model_type,
        "architectures": [type(model).__name__],
        "torch_dtype": str(stored_dtype).removeprefix("torch."),
        **asdict(config),
    })
    return directory


def load_pretrained(
    directory: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedModel:
    """Load a model directory written by :func:`save_pretrained`; the model comes back in eval mode.

    Args:
        directory: the model directory.
        device: where to put the model.
        dtype: the model's parameter dtype (weights stored in another dtype are converted).

    Returns:
        A :class:`LoadedModel`.

    Raises:
        AigcError: the directory or any of its files is missing, ``model_type`` is unknown, config.json or
            generation_config.json has unknown or invalid fields, or the weights do not fit the config.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AigcError(f"model directory not found: {directory}; train one with `aigc train` or check the path")
    if (directory / CONFIG_FILE).is_file() and _read_json_object(directory / CONFIG_FILE).get("model_type") in IMAGE_MODEL_TYPES:
        raise AigcError(f"{directory} holds an image model, not a text generator; use it with `aigc sketch` "
                        "(or models.model_dir.load_image_model)", param="model")
    missing = [name for name in MODEL_DIR_FILES if not (directory / name).is_file()]
    if missing:
        raise AigcError(f"model directory {directory} is incomplete: missing {', '.join(missing)}; "
                        "save it again with save_pretrained (or re-run `aigc train`)")
    config_path = directory / CONFIG_FILE
    config_dict = _read_json_object(config_path)
    model_type = config_dict.get("model_type")
    if model_type not in MODEL_TYPES:
        raise AigcError(f"{config_path}: unknown model_type {model_type!r}; known model types are: {', '.join(MODEL_TYPES)}")
    model_cls, config_cls = MODEL_TYPES[model_type]
    config_fields = {key: value for key, value in config_dict.items() if key not in _CONFIG_METADATA_KEYS}
    config = dataclass_from_dict(config_cls, config_fields, config_path)
    generation_config = dataclass_from_dict(GenerationConfig, _read_json_object(directory / GENERATION_CONFIG_FILE),
                                            directory / GENERATION_CONFIG_FILE)
    tokenizer = TextTokenizer.from_file(directory / TOKENIZER_FILE)
    if tokenizer.vocab_size > config.vocab_size:
        raise AigcError(f"{directory / TOKENIZER_FILE} has {tokenizer.vocab_size} tokens but the model embeds only "
                        f"{config.vocab_size}; it belongs to another model, copy the right tokenizer.json")

    model = model_cls(config)
    weights_path = directory / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as error:
        raise AigcError(f"cannot read weights {weights_path}: {error}; the file is damaged, save the model again") from None
    _check_weights(model, tensors, weights_path)
    model.load_state_dict(tensors, strict=False)  # strict=False only for tied copies; _check_weights vetted the rest
    model.to(device=device, dtype=dtype).eval()
    return LoadedModel(model, tokenizer, generation_config, config_dict, directory)


@dataclass
class LoadedImageModel:
    """Everything :func:`load_image_model` reads from an image model directory."""

    model: nn.Module
    config_dict: dict[str, Any]  # config.json as written (model_type included)
    directory: Path

    @property
    def class_names(self) -> list[str]:
        return list(self.model.config.class_names)


def save_image_model(model: nn.Module, directory: str | Path, *, card: ModelCard | None = None) -> Path:
    """Write an image model (VAE, GAN, diffusion U-Net, classifier) as ``config.json``, ``model.safetensors``, ``README.md``.

    The symmetric reader is :func:`load_image_model`; every file is written atomically, config.json last.
    """
    directory = Path(directory)
    if model.model_type not in IMAGE_MODEL_TYPES:
        raise TypeError(f"{type(model).__name__} is not an image model; use save_pretrained")
    tensors = _weights_to_save(model, None)
    card = card if card is not None else ModelCard(name=directory.name, pipeline_tag="unconditional-image-generation")
    if card.num_parameters is None:
        card = replace(card, num_parameters=model.num_parameters())
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_with(directory / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    atomic_write(directory / CARD_FILE, card.to_markdown())
    atomic_write_json(directory / CONFIG_FILE, {
        "model_type": model.model_type,
        "architectures": [type(model).__name__],
        "torch_dtype": "float32",
        **asdict(model.config),
    })
    return directory


def load_image_model(directory: str | Path, device: torch.device | str = "cpu") -> LoadedImageModel:
    """Load an image model directory written by :func:`save_image_model`, in eval mode.

    Raises:
        AigcError: the directory or a file is missing, it holds a text model or an unknown model_type,
            config.json has unknown or invalid fields, or the weights do not fit the config.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AigcError(f"model directory not found: {directory}; train one with `aigc train --arch vae|gan|diffusion`",
                        param="model")
    missing = [name for name in IMAGE_MODEL_DIR_FILES if not (directory / name).is_file()]
    if missing:
        raise AigcError(f"model directory {directory} is incomplete: missing {', '.join(missing)}; re-run `aigc train`",
                        param="model")
    config_path = directory / CONFIG_FILE
    config_dict = _read_json_object(config_path)
    model_type = config_dict.get("model_type")
    if model_type not in IMAGE_MODEL_TYPES:
        raise AigcError(f"{directory} holds a {model_type!r} model, not an image model; image model types are: "
                        f"{', '.join(IMAGE_MODEL_TYPES)}", param="model")
    model_cls, config_cls = MODEL_TYPES[model_type]
    config_fields = {key: value for key, value in config_dict.items() if key not in _CONFIG_METADATA_KEYS}
    model = model_cls(dataclass_from_dict(config_cls, config_fields, config_path))
    weights_path = directory / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as error:
        raise AigcError(f"cannot read weights {weights_path}: {error}; the file is damaged, save the model again") from None
    _check_weights(model, tensors, weights_path)
    model.load_state_dict(tensors)
    model.to(device).eval()
    return LoadedImageModel(model, config_dict, directory)


def weights_sha256(directory: str | Path) -> str:
    """The sha256 of a model directory's ``model.safetensors``, for provenance records.

    Raises:
        AigcError: the weights file is missing.
    """
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise AigcError(f"no {WEIGHTS_FILE} in {directory}; is it a model directory?")
    return sha256_file(path)


def dataclass_from_dict(cls: type, data: dict[str, Any], source: Path) -> Any:
    """Build config dataclass ``cls`` from JSON ``data``, naming ``source`` and the field on any problem.

    Raises:
        AigcError: an unknown field, a value of the wrong type, or one the dataclass rejects.
    """
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in fields(cls) if f.init]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise AigcError(f"{source}: unknown field(s) {', '.join(unknown)}; allowed fields are: {', '.join(allowed)}",
                        param=unknown[0])
    values = {}
    for name, value in data.items():
        if not _matches(value, hints[name]):
            raise AigcError(f"{source}: {name}={value!r} is not a valid {_describe(hints[name])}; fix it in that file",
                            param=name)
        values[name] = float(value) if hints[name] is float else value
    try:
        return cls(**values)
    except AigcError as error:
        raise AigcError(f"{source}: {error}", param=error.param) from None


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(item, item_hint) for item in value)
    raise TypeError(f"config fields of type {hint} are not supported")


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "value, one of " + ", ".join(repr(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return f"list of {_describe(typing.get_args(hint)[0])}"
    return "null" if hint is type(None) else hint.__name__


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AigcError(f"{path} is not valid JSON ({error}); save the model again") from None
    if not isinstance(data, dict):
        raise AigcError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _unique_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each shared (tied) tensor under its first name only."""
    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tensor.shape, tensor.stride())
        if key not in seen:
            seen.add(key)
            tensors[name] = tensor
    return tensors


def _weights_to_save(model: nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    tensors = {}
    for name, tensor in _unique_state_dict(model).items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous()
    return tensors


def _check_weights(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = {name: tensor.shape for name, tensor in _unique_state_dict(model).items()}
    missing = [name for name in expected if name not in tensors]
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = ([f"missing tensors {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected tensors {', '.join(unexpected)}"] if unexpected else [])
        raise AigcError(f"{path} does not match config.json: {'; '.join(parts)}; the weights belong to another model")
    for name, shape in expected.items():
        if tensors[name].shape != shape:
            raise AigcError(f"{path} does not match config.json: tensor {name} has shape {tuple(tensors[name].shape)}, "
                            f"the config needs {tuple(shape)}; the weights belong to another model")
