import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from core.config import get_settings, load_settings, reset_settings_cache, resolve_jwt_secret
from core.errors import ConfigError


def test_defaults(monkeypatch):
    monkeypatch.delenv("OPTIMUS_DATA_DIR")
    s = load_settings()
    assert s.data_dir == Path("data")
    assert s.storage == "embedded"
    assert s.fallback == "none"
    assert s.max_message_chars == 32_000
    assert s.max_messages_per_conversation == 0
    assert s.conversation_ttl == timedelta(0)
    assert s.context_turns == 10
    assert s.jwt_secret is None and s.database_url is None


def test_precedence_env_then_dotenv_then_secrets_then_default(monkeypatch):
    Path(".streamlit").mkdir()
    Path(".streamlit/secrets.toml").write_text(
        'OPTIMUS_MAX_MESSAGE_CHARS = 300\nOPTIMUS_CONTEXT_TURNS = 7\nOTHER_KEY = "x"\n'
        '[optimus]\nmax_messages_per_conversation = 40\n'
    )
    Path(".env").write_text("OPTIMUS_MAX_MESSAGE_CHARS=200\nOPTIMUS_CONTEXT_TURNS=6\n")
    monkeypatch.setenv("OPTIMUS_MAX_MESSAGE_CHARS", "100")
    s = load_settings()
    assert s.max_message_chars == 100  # env wins
    assert s.context_turns == 6  # .env beats secrets.toml
    assert s.max_messages_per_conversation == 40  # from the [optimus] table
    assert s.conversation_ttl == timedelta(0)  # default


def test_settings_are_read_once(monkeypatch):
    first = get_settings()
    monkeypatch.setenv("OPTIMUS_CONTEXT_TURNS", "3")
    assert get_settings() is first
    reset_settings_cache()
    assert get_settings().context_turns == 3


def test_ttl_accepts_seconds_and_iso(monkeypatch):
    monkeypatch.setenv("OPTIMUS_CONVERSATION_TTL", "P30D")
    assert load_settings().conversation_ttl == timedelta(days=30)
    monkeypatch.setenv("OPTIMUS_CONVERSATION_TTL", "3600")
    assert load_settings().conversation_ttl == timedelta(hours=1)
    monkeypatch.setenv("OPTIMUS_CONVERSATION_TTL", "30d")
    assert load_settings().conversation_ttl == timedelta(days=30)
    monkeypatch.setenv("OPTIMUS_CONVERSATION_TTL", "-5")
    with pytest.raises(ConfigError, match="OPTIMUS_CONVERSATION_TTL"):
        load_settings()


def test_invalid_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("OPTIMUS_STORAGE", "cloud")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "OPTIMUS_STORAGE" in err.value.message
    assert "'embedded', 'ephemeral' or 'server'" in err.value.message
    assert "Traceback" not in err.value.message


def test_server_mode_needs_database_and_qdrant(monkeypatch):
    monkeypatch.setenv("OPTIMUS_STORAGE", "server")
    with pytest.raises(ConfigError, match="OPTIMUS_DATABASE_URL"):
        load_settings()
    monkeypatch.setenv("OPTIMUS_DATABASE_URL", "postgresql+psycopg://u:p@127.0.0.1:1/x")
    with pytest.raises(ConfigError, match="OPTIMUS_QDRANT_URL"):
        load_settings()


def test_short_jwt_secret_is_rejected_without_echoing_it(monkeypatch):
    monkeypatch.setenv("OPTIMUS_JWT_SECRET", "hunter2-short")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "OPTIMUS_JWT_SECRET" in err.value.message and "32 bytes" in err.value.message
    assert "hunter2" not in err.value.message


def test_secrets_are_secretstr(monkeypatch):
    monkeypatch.setenv("OPTIMUS_DATABASE_URL", "postgresql+psycopg://u:topsecret@127.0.0.1/x")
    monkeypatch.setenv("OPTIMUS_JWT_SECRET", "k" * 40)
    s = load_settings()
    assert "topsecret" not in repr(s) and "k" * 40 not in repr(s)
    assert s.jwt_secret.get_secret_value() == "k" * 40


def test_broken_secrets_toml_is_a_clear_error():
    Path(".streamlit").mkdir()
    Path(".streamlit/secrets.toml").write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="secrets.toml is not valid TOML"):
        load_settings()


def test_jwt_secret_generated_once_with_mode_0600(isolated_settings):
    s = load_settings()
    first = resolve_jwt_secret(s)
    path = isolated_settings / "jwt_secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first.get_secret_value().encode()) >= 32
    assert resolve_jwt_secret(s).get_secret_value() == first.get_secret_value()


def test_configured_jwt_secret_wins_and_writes_nothing(isolated_settings, monkeypatch):
    monkeypatch.setenv("OPTIMUS_JWT_SECRET", "s" * 48)
    assert resolve_jwt_secret(load_settings()).get_secret_value() == "s" * 48
    assert not (isolated_settings / "jwt_secret").exists()


def test_truncated_secret_file_is_refused(isolated_settings):
    isolated_settings.mkdir(parents=True)
    (isolated_settings / "jwt_secret").write_text("short\n")
    with pytest.raises(ConfigError, match="Delete the file"):
        resolve_jwt_secret(load_settings())
