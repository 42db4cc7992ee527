"""Provider registry: listing, construction from keys (no network), retries and fallback wiring."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelResponse, TextPart
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.function import FunctionModel

from core.config import load_settings
from core.errors import ProviderAuthError, ValidationError
from core.models.registry import PROVIDERS, ModelRegistry, RetryingModel

FAKE_KEYS = {
    "openai_api_key": "sk-test-openai",
    "anthropic_api_key": "sk-ant-test",
    "google_api_key": "g-test",
    "groq_api_key": "gsk-test",
    "mistral_api_key": "m-test",
    "xai_api_key": "xai-test",
    "together_api_key": "t-test",
}
EXPECTED_CLASS = {
    "openai": "OpenAIResponsesModel",
    "anthropic": "AnthropicModel",
    "google": "GoogleModel",
    "groq": "GroqModel",
    "mistral": "MistralModel",
    "xai": "XaiModel",
    "together": "OpenAIChatModel",
}


def local_stub():
    return FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("local")]), model_name="local-stub")


@pytest.mark.parametrize("provider", sorted(EXPECTED_CLASS))
def test_each_hosted_provider_builds_from_a_fake_key(provider):
    key_field = PROVIDERS[provider].key_field
    registry = ModelRegistry(load_settings(**{key_field: FAKE_KEYS[key_field]}, fallback_model="none"))
    assert registry.configured_providers() == [provider]
    choices = registry.available_models()
    assert choices and all(c.provider == provider for c in choices)
    model = registry.build(choices[0].id)
    assert isinstance(model, RetryingModel)
    assert type(model.wrapped).__name__ == EXPECTED_CLASS[provider]
    assert model.model_name == choices[0].name


def test_nothing_configured_lists_only_the_local_model():
    registry = ModelRegistry(load_settings(), local_model=local_stub)
    assert [c.id for c in registry.available_models()] == ["local"]
    assert registry.default_model_id() == "local"
    assert registry.available_models()[0].tools is False


def test_nothing_at_all_is_a_clear_error():
    with pytest.raises(ProviderAuthError, match="OPENAI_API_KEY"):
        ModelRegistry(load_settings()).default_model_id()


def test_missing_key_names_the_variable_to_set():
    registry = ModelRegistry(load_settings(openai_api_key="sk-x"))
    with pytest.raises(ProviderAuthError, match="set ANTHROPIC_API_KEY"):
        registry.build("anthropic:claude-sonnet-5-5")
    with pytest.raises(ProviderAuthError, match="OLLAMA_BASE_URL"):
        registry.build("ollama:llama3.2")


def test_unknown_model_ids_are_validation_errors():
    registry = ModelRegistry(load_settings(openai_api_key="sk-x"))
    for bad in ["", "gpt", "nosuch:model", "openai:"]:
        with pytest.raises(ValidationError):
            registry.build(bad)


def test_ollama_compatible_and_extra_models_are_listed_from_settings():
    settings = load_settings(
        ollama_base_url="http://127.0.0.1:11434/v1", ollama_models="llama3.2, qwen3",
        openai_compatible_base_url="http://127.0.0.1:8000/v1", openai_compatible_models="my-model",
        openai_api_key="sk-x", extra_models="openai:gpt-4o-mini, bogus",
    )
    ids = [c.id for c in ModelRegistry(settings, local_model=local_stub).available_models()]
    assert ids[0] == "local"
    assert {"ollama:llama3.2", "ollama:qwen3", "compatible:my-model", "openai:gpt-4o-mini"} <= set(ids)
    assert not any(i.startswith(("anthropic:", "google:")) for i in ids)


def test_keys_are_read_from_streamlit_secrets_root_keys(isolated_settings: Path):
    secrets = Path(".streamlit")
    secrets.mkdir()
    (secrets / "secrets.toml").write_text('GROQ_API_KEY = "gsk-from-toml"\nOPTIMUS_FALLBACK_MODEL = "none"\n')
    registry = ModelRegistry(load_settings())
    assert registry.configured_providers() == ["groq"]
    assert registry.settings.groq_api_key.get_secret_value() == "gsk-from-toml"


def test_default_model_setting_is_honoured_when_available():
    settings = load_settings(openai_api_key="sk-x", anthropic_api_key="sk-y", default_model="anthropic:claude-haiku-5-5")
    assert ModelRegistry(settings).default_model_id() == "anthropic:claude-haiku-5-5"
    settings = load_settings(openai_api_key="sk-x", default_model="anthropic:claude-haiku-5-5")
    assert ModelRegistry(settings).default_model_id().startswith("openai:")


def test_hosted_models_fall_back_to_local_by_default():
    registry = ModelRegistry(load_settings(openai_api_key="sk-x"), local_model=local_stub)
    model = registry.build("openai:gpt-6-luna")
    assert isinstance(model, FallbackModel)
    assert registry.build("openai:gpt-6-luna", fallback=False).__class__ is RetryingModel
    assert registry.build("local").model_name == "local-stub"


def test_retrying_model_backs_off_on_429_then_succeeds():
    attempts, pauses = [], []

    def flaky(messages, info):
        attempts.append(1)
        if len(attempts) < 3:
            raise ModelHTTPError(429, "flaky", body={"error": "slow down"})
        return ModelResponse(parts=[TextPart("ok")])

    model = RetryingModel(FunctionModel(flaky), retries=3, base_delay=0.5, sleep=pauses.append)
    assert Agent(model).run_sync("hi").output == "ok"
    assert len(attempts) == 3
    assert len(pauses) == 2 and pauses[1] > pauses[0]  # exponential


def test_retrying_model_does_not_retry_a_bad_request():
    attempts = []

    def bad(messages, info):
        attempts.append(1)
        raise ModelHTTPError(400, "bad", body={"error": "invalid"})

    with pytest.raises(ModelHTTPError):
        Agent(RetryingModel(FunctionModel(bad), retries=3, sleep=lambda s: None)).run_sync("hi")
    assert len(attempts) == 1


def test_retry_delay_honours_retry_after_within_the_cap():
    model = RetryingModel(FunctionModel(lambda m, i: None), base_delay=0.1, max_delay=5)
    exc = ModelHTTPError(429, "m", body=None)
    exc.retry_after = 3.0
    assert model.delay(0, exc) == 3.0
    exc.retry_after = 60.0
    assert model.delay(0, exc) == 5


def test_auth_errors_do_not_fall_back():
    def rejected(messages, info):
        from pydantic_ai.exceptions import ModelAuthenticationError

        raise ModelAuthenticationError("m", "invalid x-api-key")

    registry = ModelRegistry(load_settings(openai_api_key="sk-x"), local_model=local_stub, sleep=lambda s: None)
    model = registry.resilient(FunctionModel(rejected), "openai:m")
    with pytest.raises(Exception) as info:
        asyncio.run(Agent(model).run("hi"))
    assert "invalid x-api-key" in str(info.value) or any(
        "invalid x-api-key" in str(e) for e in getattr(info.value, "exceptions", []))


def test_one_transient_error_costs_at_most_retries_plus_one_calls_per_learning_phase(isolated_settings):
    """core.retry: the provider wrapper is the only in-process retry; the pipeline makes one attempt."""
    from core.memory.pipeline import ExtractionFailed, MemoryPipeline
    from core.memory.types import Scope
    from tests.memory_fixtures import open_service

    calls = []

    def down(messages, info):
        calls.append(1)
        raise ModelHTTPError(503, "overloaded", body=None)

    service, users, close = open_service("edge", isolated_settings / "m")
    try:
        model = RetryingModel(FunctionModel(down), retries=2, sleep=lambda s: None)
        with pytest.raises(ExtractionFailed):
            MemoryPipeline(service, model).run(Scope.personal(users.create("retry-user").id),
                                               [{"role": "user", "content": "I live in Oslo."}])
        assert len(calls) == 3
    finally:
        close()
