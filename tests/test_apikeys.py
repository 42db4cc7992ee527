"""API keys on both SQLite and PostgreSQL: shown once, stored as SHA-256, counted, revocable, and
rejected for locked or deleted owners."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from core.apikeys import ApiKeyStore
from core.cli import main
from core.errors import InvalidCredentials, NotFound, PermissionDenied, ValidationError
from core.schema import api_keys, users
from core.users import UserStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(engine, clock) -> ApiKeyStore:
    return ApiKeyStore(engine, clock=clock)


@pytest.fixture
def people(engine):
    user_store = UserStore(engine)
    return user_store.create("alice"), user_store.create("bob", role="admin")


def test_a_key_is_shown_once_and_stored_only_as_its_sha256(engine, store, people):
    alice, _ = people
    key, plaintext = store.create(alice.id, "  laptop   script ")
    assert plaintext.startswith("om_") and len(plaintext) == 3 + 43
    assert key.name == "laptop script" and key.owner_id == alice.id and key.active
    assert key.prefix == plaintext[:11] and key.usage_count == 0 and key.last_used_at is None
    with engine.connect() as conn:
        row = conn.execute(select(api_keys)).one()
    assert row.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert all(plaintext not in str(value) for value in row)
    _, other = store.create(alice.id, "second")
    assert other != plaintext


def test_verify_names_the_owner_and_counts_each_use(store, people, clock):
    alice, _ = people
    key, plaintext = store.create(alice.id, "cli")
    owner = store.verify(plaintext)
    assert (owner.owner_id, owner.username, owner.role, owner.key_id, owner.key_name) == (
        alice.id, "alice", "user", key.id, "cli")
    clock.now += timedelta(minutes=5)
    store.verify(plaintext)
    [listed] = store.for_owner(alice.id)
    assert listed.usage_count == 2 and listed.last_used_at == clock.now


@pytest.mark.parametrize("forged", [
    "", "om_", "not-a-key", "Token om_abc", "om_" + "A" * 43, "x" * 500, None, 42,
])
def test_forged_and_malformed_keys_are_rejected(store, people, forged):
    store.create(people[0].id, "real")
    with pytest.raises(InvalidCredentials):
        store.verify(forged)


def test_a_key_with_one_character_changed_is_rejected(store, people):
    _, plaintext = store.create(people[0].id, "real")
    flipped = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    with pytest.raises(InvalidCredentials):
        store.verify(flipped)


def test_revoked_keys_stop_working_at_once_and_revoking_is_idempotent(store, people, clock):
    alice, _ = people
    key, plaintext = store.create(alice.id, "old")
    store.verify(plaintext)
    revoked = store.revoke(alice.id, key.id)
    assert revoked.revoked_at == clock.now and not revoked.active
    with pytest.raises(InvalidCredentials):
        store.verify(plaintext)
    clock.now += timedelta(hours=1)
    assert store.revoke(alice.id, key.id).revoked_at == revoked.revoked_at  # first revocation time kept
    assert [k.id for k in store.for_owner(alice.id, include_revoked=False)] == []
    assert [k.id for k in store.for_owner(alice.id)] == [key.id]


def test_owners_see_and_revoke_only_their_own_keys(store, people, clock):
    alice, bob = people
    a_old, _ = store.create(alice.id, "a-old")
    clock.now += timedelta(seconds=1)
    a_new, _ = store.create(alice.id, "a-new")
    b_key, b_plain = store.create(bob.id, "b")
    assert [k.id for k in store.for_owner(alice.id)] == [a_new.id, a_old.id]  # newest first
    assert [k.id for k in store.for_owner(bob.id)] == [b_key.id]
    with pytest.raises(NotFound):
        store.revoke(alice.id, b_key.id)
    assert store.verify(b_plain).owner_id == bob.id  # untouched


def test_locked_owners_keys_are_rejected_and_they_get_no_new_ones(engine, store, people, clock):
    alice, _ = people
    _, plaintext = store.create(alice.id, "k")
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == alice.id).values(locked_at=clock.now))
    with pytest.raises(InvalidCredentials):
        store.verify(plaintext)
    with pytest.raises(PermissionDenied):
        store.create(alice.id, "another")
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == alice.id).values(locked_at=None))
    assert store.verify(plaintext).owner_id == alice.id


def test_deleting_the_owner_deletes_their_keys(engine, store, people):
    alice, _ = people
    _, plaintext = store.create(alice.id, "k")
    with engine.begin() as conn:
        conn.execute(delete(users).where(users.c.id == alice.id))
    with pytest.raises(InvalidCredentials):
        store.verify(plaintext)
    with engine.connect() as conn:
        assert conn.execute(select(api_keys)).all() == []


def test_names_are_required_unknown_owners_refused_and_active_keys_capped(store, people, monkeypatch):
    alice, _ = people
    with pytest.raises(ValidationError) as err:
        store.create(alice.id, "   ")
    assert err.value.field == "name"
    with pytest.raises(ValidationError):
        store.create(alice.id, "x" * 101)
    with pytest.raises(NotFound):
        store.create("0" * 32, "ghost")
    monkeypatch.setattr("core.apikeys.MAX_ACTIVE_KEYS", 2)
    first, _ = store.create(alice.id, "1")
    store.create(alice.id, "2")
    with pytest.raises(ValidationError, match="at most 2 active keys"):
        store.create(alice.id, "3")
    store.revoke(alice.id, first.id)
    store.create(alice.id, "3")  # revoked keys do not count


def test_creating_and_revoking_are_audited_without_the_key(engine, people, clock):
    from core.audit import AuditLog

    alice, bob = people  # bob is an admin: he may read the audit log
    audit = AuditLog(engine)
    store = ApiKeyStore(engine, audit=audit, clock=clock)
    key, plaintext = store.create(alice.id, "script", ip="203.0.113.7")
    store.revoke(alice.id, key.id, ip="2001:db8::7")
    store.revoke(alice.id, key.id)  # already revoked: nothing new to record
    cli_key, _ = store.create(alice.id, "cli", actor_id=None)
    events = audit.query(viewer=bob, events=["apikey.create", "apikey.revoke"])
    assert [(e.event, e.actor_id, e.subject_id, e.ip) for e in reversed(events)] == [
        ("apikey.create", alice.id, key.id, "203.0.113.7"), ("apikey.revoke", alice.id, key.id, "2001:db8::7"),
        ("apikey.create", None, cli_key.id, None)]  # the CLI has no client address
    assert events[-1].detail == {"owner_id": alice.id, "name": "script", "prefix": key.prefix}
    assert all(plaintext not in str(e.detail) and plaintext[11:] not in str(e.detail) for e in events)


def test_concurrent_uses_are_all_counted(store, people):
    _, plaintext = store.create(people[0].id, "busy")
    errors: list[BaseException] = []

    def use() -> None:
        try:
            for _ in range(15):
                store.verify(plaintext)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.for_owner(people[0].id)[0].usage_count == 60


def test_cli_creates_lists_and_revokes(isolated_settings, capsys):
    from core.config import get_settings
    from core.storage import open_storage

    storage = open_storage(get_settings())
    try:
        UserStore(storage.engine).create("carol")
    finally:
        storage.close()

    assert main(["apikey", "create", "--username", "carol", "--name", "backup job"]) == 0
    out = capsys.readouterr()
    plaintext = out.out.strip()
    assert plaintext.startswith("om_") and "not shown again" in out.err

    assert main(["apikey", "list", "--username", "carol"]) == 0
    listing = capsys.readouterr().out
    assert "'backup job'" in listing and "active" in listing and plaintext not in listing
    key_id = listing.split()[0]

    assert main(["apikey", "revoke", "--username", "carol", "--key-id", key_id]) == 0
    assert "Revoked" in capsys.readouterr().out
    assert main(["apikey", "list", "--username", "carol"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["apikey", "create", "--username", "nobody", "--name", "x"]) == 1
