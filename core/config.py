"""One settings object for the whole process.

Sources, highest precedence first:

1. environment variables ``OPTIMUS_*`` (provider keys keep their SDK names, e.g. ``OPENAI_API_KEY``)
2. a ``.env`` file in the working directory
3. ``.streamlit/secrets.toml``: root keys named ``OPTIMUS_*`` or keys of an ``[optimus]`` table
4. the defaults below

Read once with :func:`get_settings`; a missing or invalid setting raises :class:`ConfigError`
whose message names the variable and how to fix it.
"""

from __future__ import annotations

import functools
import os
import secrets
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from decimal import Decimal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from core.errors import ConfigError

ENV_PREFIX = "OPTIMUS_"
SECRETS_TOML = Path(".streamlit") / "secrets.toml"
JWT_SECRET_FILE = "jwt_secret"
MIN_JWT_SECRET_BYTES = 32

StorageMode = Literal["embedded", "ephemeral", "server"]
# A list given as "a, b, c" (env, .env) or as a TOML array.
CommaList = Annotated[list[str], NoDecode]


class StreamlitSecretsSource(PydanticBaseSettingsSource):
    """Settings from ``.streamlit/secrets.toml`` (root ``OPTIMUS_*`` keys or an ``[optimus]`` table)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self._values = self._read(path)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        if not path.is_file():
            return {}
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML ({exc}). Fix or remove the file.") from exc
        values: dict[str, Any] = {}
        table = data.get("optimus")
        if isinstance(table, dict):
            values.update({str(k).lower(): v for k, v in table.items()})
        for key, value in data.items():
            if key.upper().startswith(ENV_PREFIX):
                values[key[len(ENV_PREFIX):].lower()] = value
            elif key.upper() in SDK_KEY_NAMES:
                values.setdefault(SDK_KEY_NAMES[key.upper()], value)
        return values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            if name in self._values:
                alias = info.validation_alias
                out[alias.choices[0] if isinstance(alias, AliasChoices) else name] = self._values[name]
        return out


# Root keys of secrets.toml / env names that keep their SDK spelling → settings field.
SDK_KEY_NAMES = {
    "OPENAI_API_KEY": "openai_api_key",
    "ANTHROPIC_API_KEY": "anthropic_api_key",
    "GOOGLE_API_KEY": "google_api_key",
    "GEMINI_API_KEY": "google_api_key",
    "GROQ_API_KEY": "groq_api_key",
    "MISTRAL_API_KEY": "mistral_api_key",
    "XAI_API_KEY": "xai_api_key",
    "TOGETHER_API_KEY": "together_api_key",
    "AZURE_OPENAI_API_KEY": "azure_openai_api_key",
    "HUGGINGFACE_API_KEY": "huggingface_api_key",
    "HF_TOKEN": "huggingface_api_key",
    "OLLAMA_BASE_URL": "ollama_base_url",
}


class Settings(BaseSettings):
    """Every knob Optimus has. Field ``x`` is set by ``OPTIMUS_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_by_name=True,
    )

    data_dir: Path = Field(Path("data"), description="Where embedded data, the JWT secret and models live.")
    storage: StorageMode = Field("embedded", description="embedded | ephemeral | server")
    fallback: Literal["none", "ephemeral"] = Field(
        "none", description="In server mode, start ephemeral (loudly) if the database is unreachable."
    )
    database_url: SecretStr | None = Field(
        None, description="SQLAlchemy URL; postgresql+psycopg://... switches to PostgreSQL."
    )
    qdrant_url: str | None = Field(None, description="Qdrant server URL (server mode).")
    qdrant_api_key: SecretStr | None = None
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 key, >= 32 bytes. Generated into the data dir when unset."
    )
    max_message_chars: int = Field(32_000, ge=1, le=10_000_000)
    max_messages_per_conversation: int = Field(0, ge=0, description="0 keeps every message.")
    maintenance_interval: timedelta = Field(
        timedelta(hours=1),
        description="How often scheduled maintenance runs (expired memories and conversations, failed learning "
                    "jobs; consolidation every 24 intervals): 3600, 1h, PT1H; 0 turns the schedule off.")
    conversation_ttl: timedelta = Field(
        timedelta(0), description="Idle time after which a conversation expires; 0 keeps them forever."
    )
    context_turns: int = Field(10, ge=1, le=1000)
    model_cache_dir: Path | None = Field(
        None, description="Derived model files (the ONNX export); default ~/.cache/optimus (XDG_CACHE_HOME)."
    )
    embedder_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "onnx", description="Local embedding runtime for the bundled MiniLM (onnx is exported from it once)."
    )
    embedder: str = Field(
        "local", min_length=1,
        description="'local' (the bundled MiniLM) or '<mem0 provider>:<model>', e.g. openai:text-embedding-3-small, "
                    "ollama:nomic-embed-text. Changing it needs `python -m core reembed`.")
    embedding_dims: int | None = Field(
        None, gt=0, le=65_536,
        description="Size of the embedder's vectors; needed when the model is not in the table of known models.")
    embedder_base_url: str | None = Field(
        None, description="Server of the embedder: an OpenAI-compatible endpoint, Ollama, LM Studio, a TEI server, "
                          "or the Azure OpenAI resource endpoint.")
    embedder_api_version: str | None = Field(None, description="Azure OpenAI API version for the embedder.")
    db_connect_timeout: float = Field(5.0, gt=0, le=120)
    # --- model providers: keys keep the names their SDKs use; OPTIMUS_-prefixed names work too
    openai_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY", "OPTIMUS_OPENAI_API_KEY"))
    anthropic_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "OPTIMUS_ANTHROPIC_API_KEY"))
    google_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("GOOGLE_API_KEY", "GEMINI_API_KEY", "OPTIMUS_GOOGLE_API_KEY"))
    groq_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("GROQ_API_KEY", "OPTIMUS_GROQ_API_KEY"))
    mistral_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MISTRAL_API_KEY", "OPTIMUS_MISTRAL_API_KEY"))
    xai_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("XAI_API_KEY", "OPTIMUS_XAI_API_KEY"))
    together_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TOGETHER_API_KEY", "OPTIMUS_TOGETHER_API_KEY"))
    azure_openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AZURE_OPENAI_API_KEY", "OPTIMUS_AZURE_OPENAI_API_KEY"))
    huggingface_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("HUGGINGFACE_API_KEY", "HF_TOKEN", "OPTIMUS_HUGGINGFACE_API_KEY"),
        description="Token for a Hugging Face text-embeddings-inference server (embedder only).")
    ollama_base_url: str | None = Field(
        None, validation_alias=AliasChoices("OLLAMA_BASE_URL", "OPTIMUS_OLLAMA_BASE_URL"),
        description="e.g. http://localhost:11434/v1")
    ollama_models: CommaList = Field(["llama3.2"], description="Models pulled into Ollama, comma-separated.")
    openai_compatible_base_url: str | None = Field(None, description="Any OpenAI-compatible server (vLLM, LM Studio…).")
    openai_compatible_api_key: SecretStr | None = None
    openai_compatible_models: CommaList = Field([], description="Model names served there, comma-separated.")
    extra_models: CommaList = Field([], description="More 'provider:model' ids to offer, comma-separated.")
    default_model: str | None = Field(None, description="Model id new chats use; default: the first available.")
    fallback_model: str = Field("local", description="Model answering when the chosen one fails; 'none' disables.")
    memory_model: str | None = Field(None, description="Model for memory extraction; default: the chat model's.")
    model_timeout: float = Field(60.0, gt=0, le=3600, description="Seconds to wait for a model response.")
    model_retries: int = Field(3, ge=0, le=10, description="Retries on 429/5xx, with exponential backoff.")
    daily_budget_usd: Decimal = Field(Decimal(0), ge=0, description="Per-user daily model spend; 0 = unlimited.")
    recall_top_k: int = Field(5, ge=0, le=50, description="Memories recalled into each turn's prompt.")
    # --- REST API (core.api)
    api_host: str = Field("127.0.0.1", description="Address the API server binds; 0.0.0.0 serves the network.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port of the API server.")
    api_rate_limit_per_minute: int = Field(
        120, ge=0, le=1_000_000,
        description="Requests per account per minute, all its keys together; 0 = unlimited.")
    api_rate_limit_per_address_per_minute: int = Field(
        600, ge=0, le=1_000_000,
        description="Requests per client address per minute, counted before the key is looked up; 0 = unlimited.")
    api_max_body_bytes: int = Field(
        1_000_000, ge=1024, le=100_000_000, description="Largest request body accepted (413 above).")
    api_cors_origins: CommaList = Field(
        [], description="Browser origins allowed to call the API, comma-separated; none by default.")
    api_learn_wait_seconds: float = Field(
        20.0, ge=0, le=250,
        description="How long an inferred add over the API waits for learning before answering PENDING (it goes on).")
    trusted_proxies: CommaList = Field(
        [], description="Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For names the "
                        "client's address (per-address limits, sessions, audit); none by default.")
    scripted_models: bool = Field(
        False, description="Offer scripted test models (test:echo, test:memory) for demos and end-to-end tests.")
    local_model: str = Field(
        "qwen2.5-coder-1.5b",
        description="Which bundled offline model the id 'local' means: qwen2.5-coder-1.5b or qwen2.5-coder-0.5b.")
    local_model_path: Path | None = Field(
        None, description="A GGUF file for the offline model instead of the bundled one."
    )
    local_model_threads: int = Field(
        0, ge=0, le=256, description="llama.cpp threads; 0 = all cores for the prompt, half for generation.")
    local_model_context: int = Field(4096, ge=512, le=131072, description="llama.cpp context window (tokens).")
    local_model_prompt_cache_mb: int = Field(
        512, ge=0, le=65536,
        description="RAM for reusing prompt prefixes across local-model requests (instructions, chat history); 0 = off.")
    # --- accounts and sessions (core.accounts)
    session_minutes: int = Field(30, ge=1, le=24 * 60, description="Access token lifetime; renewed while in use.")
    max_sessions: int = Field(5, ge=1, le=100, description="Sessions per user; a new login ends the oldest.")
    bcrypt_rounds: int = Field(12, ge=4, le=16, description="bcrypt cost; 12 in production (tests lower it).")
    login_window_minutes: int = Field(15, ge=1, le=24 * 60, description="Window for counting failed logins.")
    max_failures: int = Field(5, ge=2, le=100, description="Failed logins in the window that lock the account.")
    captcha_after: int = Field(3, ge=1, le=100, description="Failed logins after which a CAPTCHA is asked.")
    ip_max_failures: int = Field(20, ge=1, le=10_000, description="Failed logins per IP in the window before refusing it.")
    admin_username: str | None = Field(None, description="First admin, created on first start with ADMIN_PASSWORD.")
    admin_password: SecretStr | None = Field(None, description="Password of ADMIN_USERNAME (first start only).")
    admin_email: str | None = None
    oidc_admin_emails: CommaList = Field([], description="st.login identities with these emails become admins.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            StreamlitSecretsSource(settings_cls, SECRETS_TOML),
        )

    @field_validator("ollama_models", "openai_compatible_models", "extra_models", "oidc_admin_emails",
                     "api_cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("embedding_dims", "embedder_base_url", "embedder_api_version", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # docker compose passes ${VAR:-} through as an empty string: that means "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("embedder")
    @classmethod
    def _embedder_id(cls, value: str) -> str:
        value = value.strip()
        if value == "local":
            return value
        provider, sep, model = value.partition(":")
        if not sep or not provider.strip() or not model.strip():
            raise ValueError("use 'local' or '<provider>:<model>', e.g. openai:text-embedding-3-small")
        return f"{provider.strip().lower()}:{model.strip()}"

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        from core.proxies import parse_networks

        parse_networks(value)  # a typo must stop the start, not quietly trust nobody (or everybody)
        return value

    @property
    def trusted_networks(self) -> list:
        from core.proxies import parse_networks

        return parse_networks(self.trusted_proxies)

    @field_validator("conversation_ttl", "maintenance_interval", mode="before")
    @classmethod
    def _ttl_shorthand(cls, value: Any) -> Any:
        """Accept plain seconds ("3600") and shorthands ("30d", "12h", "90m", "45s") besides ISO 8601."""
        if isinstance(value, str):
            raw = value.strip().lower()
            units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
            if raw.lstrip("-").isdigit():
                return timedelta(seconds=int(raw))
            if raw[:-1].lstrip("-").isdigit() and raw[-1:] in units:
                return timedelta(seconds=int(raw[:-1]) * units[raw[-1]])
        return value

    @field_validator("conversation_ttl", "maintenance_interval")
    @classmethod
    def _ttl_not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must be 0 (forever) or a positive duration such as 2592000 or P30D")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_JWT_SECRET_BYTES} bytes; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'` or leave it unset"
            )
        return value

    @model_validator(mode="after")
    def _server_mode_needs_urls(self) -> Settings:
        if self.storage == "server":
            if self.database_url is None:
                raise ValueError(
                    "OPTIMUS_STORAGE=server needs OPTIMUS_DATABASE_URL, "
                    "e.g. postgresql+psycopg://optimus:PASSWORD@db:5432/optimus"
                )
            if not self.qdrant_url:
                raise ValueError("OPTIMUS_STORAGE=server needs OPTIMUS_QDRANT_URL, e.g. http://qdrant:6333")
        return self

    @property
    def model_cache(self) -> Path:
        if self.model_cache_dir is not None:
            return Path(self.model_cache_dir)
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "optimus"

    @property
    def conversation_ttl_seconds(self) -> float:
        return self.conversation_ttl.total_seconds()


def _explain(exc: pydantic.ValidationError) -> str:
    lines = ["Optimus cannot start: some settings are invalid."]
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ()))
        if field.upper() in SDK_KEY_NAMES:
            name = field.upper()
        else:
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        got = err.get("input")
        secret = field.lower() in {"jwt_secret", "database_url", "admin_password"} or field.lower().endswith("_api_key")
        shown = "" if secret or isinstance(got, dict) else f" (got {got!r})"
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        lines.append(f"  - {name}: {msg}{shown}")
    lines.append("Set them in the environment, in .env, or in .streamlit/secrets.toml (see README).")
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from all sources; raise :class:`ConfigError` with a readable message."""
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests, or a CLI that changes the environment)."""
    get_settings.cache_clear()


def resolve_jwt_secret(settings: Settings, data_dir: Path | None = None) -> SecretStr:
    """The configured JWT secret, or one generated on first start and kept in the data dir (0600)."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret
    directory = Path(data_dir or settings.data_dir)
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
        directory.chmod(0o700)
    path = directory / JWT_SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="utf-8").strip()
        if len(value.encode()) < MIN_JWT_SECRET_BYTES:
            raise ConfigError(
                f"{path} holds a JWT secret shorter than {MIN_JWT_SECRET_BYTES} bytes. "
                "Delete the file to generate a new one (this logs everybody out)."
            ) from None
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return SecretStr(value)
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    return SecretStr(value)
