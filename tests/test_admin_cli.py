"""The operator CLI ``python -m core``: the first admin (password from a prompt or stdin, never argv),
OPTIMUS_ADMIN_*, API keys, and backup/restore."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from core.cli import main
from core.errors import ConfigError, InvalidCredentials
from tests.conftest import REPO
from tests.test_auth import OTHER_PASSWORD, PASSWORD

NEW_PASSWORD = "marmalade lighthouse violin 77"


@pytest.fixture
def env(db_url, monkeypatch):
    """Settings pointing the CLI and open_runtime at the parametrised database, with fast bcrypt."""
    monkeypatch.setenv("OPTIMUS_DATABASE_URL", db_url)
    monkeypatch.setenv("OPTIMUS_BCRYPT_ROUNDS", "4")
    monkeypatch.setenv("OPTIMUS_JWT_SECRET", "cli-test-secret-" + "s" * 40)
    return db_url


def runtime():
    from core.config import reset_settings_cache
    from core.runtime import open_runtime

    reset_settings_cache()
    return open_runtime()


def test_create_admin_reads_the_password_from_stdin(env, capsys):
    assert main(["create-admin", "--username", "Root", "--email", "root@example.org"],
                stdin=io.StringIO(PASSWORD + "\n")) == 0
    assert "Created admin root" in capsys.readouterr().out
    rt = runtime()
    try:
        login = rt.auth.login("root", PASSWORD)
        assert login.user.role == "admin" and login.user.email == "root@example.org"
        (event,) = rt.audit.query(viewer=login.user, events="account.create")
        assert event.actor_id is None and event.detail == {"method": "cli", "role": "admin"}
    finally:
        rt.close()


def test_weak_password_or_taken_name_is_refused(env, capsys):
    assert main(["create-admin", "--username", "root"], stdin=io.StringIO("password123456\n")) == 1
    assert "too easy to guess" in capsys.readouterr().err
    assert main(["create-admin", "--username", "root"], stdin=io.StringIO(PASSWORD + "\n")) == 0
    assert main(["create-admin", "--username", "root"], stdin=io.StringIO(OTHER_PASSWORD + "\n")) == 1
    assert "taken" in capsys.readouterr().err


def test_there_is_no_password_argument(env, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["create-admin", "--username", "root", "--password", PASSWORD])
    assert exit_.value.code == 2


def test_reset_password_and_unlock(env, capsys):
    assert main(["create-admin", "--username", "root"], stdin=io.StringIO(PASSWORD + "\n")) == 0
    rt = runtime()
    try:
        root = rt.users.find_by_username("root")
        token = rt.auth.login("root", PASSWORD).token
        for _ in range(3):
            with pytest.raises(InvalidCredentials):
                rt.auth.login("root", "wrong wrong wrong")
        assert rt.auth.captcha_needed("root")
        assert main(["reset-password", "--username", "root"], stdin=io.StringIO(NEW_PASSWORD + "\n")) == 0
        assert "1 session(s) ended" in capsys.readouterr().out
        with pytest.raises(InvalidCredentials):
            rt.auth.verify(token)
        assert main(["unlock", "--username", "root"]) == 0
        assert not rt.auth.captcha_needed("root")
        assert rt.auth.login("root", NEW_PASSWORD).user.id == root.id
        assert main(["unlock", "--username", "nobody"]) == 1
    finally:
        rt.close()


def test_ephemeral_storage_has_nothing_to_administer(monkeypatch, capsys):
    monkeypatch.setenv("OPTIMUS_STORAGE", "ephemeral")
    assert main(["create-admin", "--username", "root"], stdin=io.StringIO(PASSWORD + "\n")) == 2
    assert "ephemeral" in capsys.readouterr().err


def test_real_command_with_piped_password(env):
    child_env = {k: v for k, v in os.environ.items()}
    done = subprocess.run(
        [sys.executable, "-m", "core", "create-admin", "--username", "ops"],
        input=PASSWORD + "\n", capture_output=True, text=True, cwd=REPO, env=child_env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    rt = runtime()
    try:
        assert rt.auth.login("ops", PASSWORD).user.role == "admin"
    finally:
        rt.close()


# --- OPTIMUS_ADMIN_* ---------------------------------------------------------------------------
def test_admin_from_settings_on_first_start_only(env, monkeypatch):
    monkeypatch.setenv("OPTIMUS_ADMIN_USERNAME", "boss")
    monkeypatch.setenv("OPTIMUS_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("OPTIMUS_ADMIN_EMAIL", "boss@example.org")
    rt = runtime()
    try:
        boss = rt.auth.login("boss", PASSWORD).user
        assert boss.role == "admin" and boss.email == "boss@example.org"
        rt.auth.change_password(boss.id, PASSWORD, NEW_PASSWORD)
    finally:
        rt.close()
    rt = runtime()  # restart with the old password still in the settings: the change stands
    try:
        assert rt.auth.login("boss", NEW_PASSWORD).user.id == boss.id
        assert len(rt.users.list_users(role="admin")) == 1
    finally:
        rt.close()
    monkeypatch.setenv("OPTIMUS_ADMIN_USERNAME", "another")  # an admin exists: not a second one
    rt = runtime()
    try:
        assert rt.users.find_by_username("another") is None
    finally:
        rt.close()


@pytest.mark.parametrize("variables, names", [
    ({"OPTIMUS_ADMIN_USERNAME": "boss"}, "OPTIMUS_ADMIN_PASSWORD"),
    ({"OPTIMUS_ADMIN_PASSWORD": PASSWORD}, "OPTIMUS_ADMIN_USERNAME"),
    ({"OPTIMUS_ADMIN_USERNAME": "boss", "OPTIMUS_ADMIN_PASSWORD": "password123456"}, "OPTIMUS_ADMIN_PASSWORD"),
    ({"OPTIMUS_ADMIN_USERNAME": "b!", "OPTIMUS_ADMIN_PASSWORD": PASSWORD}, "OPTIMUS_ADMIN_USERNAME"),
])
def test_bad_admin_settings_stop_the_start_with_the_variable_to_fix(env, monkeypatch, variables, names):
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=names) as exc:
        runtime()
    assert PASSWORD not in exc.value.message


def test_no_settings_no_admin(env):
    rt = runtime()
    try:
        assert rt.users.count() == 0  # no default account, no default password
    finally:
        rt.close()


def test_backup_and_restore_through_the_cli(isolated_settings, tmp_path, capsys):
    from core.memory.types import Scope

    rt = runtime()
    try:
        ada = rt.users.create("ada")
        rt.memory.add(Scope.personal(ada.id), "Keeps bees in the garden")
    finally:
        rt.close()
    assert main(["backup", "--to", str(tmp_path / "backups")]) == 0
    out = capsys.readouterr().out
    assert "1 users" in out and "1 memories" in out
    (archive,) = (tmp_path / "backups").glob("optimus-backup-*.tar.gz")
    assert main(["restore", "--from", str(archive), "--data-dir", str(tmp_path / "new")]) == 0
    assert "1 memories" in capsys.readouterr().out
    assert main(["restore", "--from", str(archive), "--data-dir", str(tmp_path / "new")]) == 1
    assert "not empty" in capsys.readouterr().err
