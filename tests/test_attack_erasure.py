"""Threat model: "delete my account" promises more than it does.

A person erases their account (or an admin erases it for them) and trusts that nothing about
them is left: not in the vector store, not in any table, not in the audit log. The ways it fails
are quiet: a rule checked after the data is already gone (the last admin erasing themself lost
their memories and kept the account), a free-text field copied into the audit log (an API key's
name, with the real user id beside it), a table nobody thought of (failed sign-ins keep the
username and the address).

What must hold, on SQLite and PostgreSQL:

* every rule is checked before anything is erased: a refused erasure changes nothing;
* after an erasure, no table holds the person's id, username, email, addresses, key names,
  memory text or message text, and the vector store holds none of their memories; the audit
  log still holds the events, under a pseudonym;
* nobody else's data changes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from core.apikeys import ApiKeyStore
from core.errors import InvalidCredentials, PermissionDenied
from core.gdpr import pseudonym
from core.memory.types import Scope
from core.runtime import Runtime, open_runtime
from core.schema import metadata

PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def runtime(backend, db_url, monkeypatch) -> Runtime:
    if backend == "postgresql":
        monkeypatch.setenv("OPTIMUS_DATABASE_URL", db_url)
    monkeypatch.setenv("OPTIMUS_BCRYPT_ROUNDS", "4")
    rt = open_runtime()
    try:
        yield rt
    finally:
        rt.close()


def everything_about(rt: Runtime, name: str, ip: str) -> dict[str, Any]:
    """A person who used every part of Optimus; returns the traces to look for afterwards."""
    person = rt.auth.register(name, PASSWORD, email=f"{name}@example.org", ip=ip)
    for _ in range(2):  # failed sign-ins remember the username and the address
        with pytest.raises(InvalidCredentials):
            rt.auth.login(name, "not the password at all", ip=ip)
    login = rt.auth.login(name, PASSWORD, ip=ip, user_agent=f"{name}-browser/1.0")
    rt.auth.mint_handoff(login.session, browser=f"{name}-browser-cookie-0000")
    conv = rt.conversations.create(person.id, f"{name} trip plans")
    rt.conversations.append(conv.id, "user", f"{name} flies to Kyoto in May", user_id=person.id)
    rt.conversations.append(conv.id, "assistant", f"Enjoy Kyoto, {name}!", user_id=person.id)
    memory = rt.memory.add(Scope.personal(person.id), f"{name} is allergic to penicillin", tags=[f"{name}-tag"],
                           metadata={"note": f"{name} metadata"})
    rt.memory.update(person.id, memory.id, text=f"{name} is allergic to penicillin and latex")
    rt.memory.add(Scope(person.id, f"{name}-end-user", agent_id=f"{name}-agent"), f"{name} end user likes jazz")
    gone = rt.memory.add(Scope.personal(person.id), f"{name} deleted memory")
    rt.memory.delete(person.id, gone.id)
    keys = ApiKeyStore(rt.storage.engine, audit=rt.audit)
    key, _ = keys.create(person.id, f"{name}'s laptop key")
    keys.revoke(person.id, key.id)
    rt.usage.record(user_id=person.id, purpose="chat", provider="openai", model="gpt-4o", latency_ms=12,
                    input_tokens=10, output_tokens=5, cost_usd=Decimal("0.0001"), conversation_id=conv.id)
    rt.gdpr.export_zip(person.id, ip=ip)
    return {"person": person, "traces": [person.id, name, f"{name}@example.org", ip, f"{name}-browser",
                                         f"{name}'s laptop key", f"{name} is allergic", f"{name} flies",
                                         f"Kyoto, {name}", f"{name} trip", f"{name} end user likes jazz",
                                         f"{name}-end-user", f"{name}-agent", f"{name}-tag", f"{name} metadata",
                                         f"{name} deleted memory"]}


def every_row(rt: Runtime) -> dict[str, list[str]]:
    """Every row of every table, as text."""
    out = {}
    with rt.storage.engine.connect() as conn:
        for table in metadata.sorted_tables:
            out[table.name] = [" ".join(str(v) for v in row) for row in conn.execute(select(table)).all()]
    return out


@pytest.mark.parametrize("by", ["self", "admin"])
def test_erasure_leaves_no_trace_in_any_table_or_the_vector_store(runtime, by):
    admin = runtime.auth.create_admin("root-admin", "tangerine submarine orchestra 42")
    dora = everything_about(runtime, "dora-erasable", "198.51.100.77")
    bystander = everything_about(runtime, "eve-bystander", "203.0.113.9")
    person = dora["person"]
    actor = person if by == "self" else admin
    before_bystander = {t: [r for r in rows if "eve-bystander" in r or bystander["person"].id in r]
                        for t, rows in every_row(runtime).items()}

    runtime.gdpr.erase(actor, person.id, confirm_username=person.username, ip="192.0.2.1")

    rows = every_row(runtime)
    for table, texts in rows.items():
        for trace in dora["traces"]:
            found = [r for r in texts if trace in r]
            assert not found, f"{table} still holds {trace!r}: {found[:2]}"
    assert runtime.memory.count(person.id) == 0
    events = [r for r in rows["audit_events"] if pseudonym(person.id) in r]
    assert len(events) >= 8  # the log kept what happened, under the pseudonym
    after_bystander = {t: [r for r in rows if "eve-bystander" in r or bystander["person"].id in r]
                       for t, rows in rows.items()}
    assert {t: len(v) for t, v in after_bystander.items()} == {t: len(v) for t, v in before_bystander.items()}
    assert runtime.memory.count(bystander["person"].id) == 2


def test_the_last_admin_erasing_themself_is_refused_before_anything_is_erased(runtime):
    admin = runtime.auth.create_admin("only-admin", "tangerine submarine orchestra 42")
    conv = runtime.conversations.create(admin.id, "Admin notes")
    runtime.conversations.append(conv.id, "user", "remember the backup schedule", user_id=admin.id)
    kept = runtime.memory.add(Scope.personal(admin.id), "Backups run at 02:00")
    with pytest.raises(PermissionDenied, match="last administrator"):
        runtime.gdpr.erase(admin, admin.id, confirm_username="only-admin")
    assert runtime.memory.get(admin.id, kept.id).text == "Backups run at 02:00"
    assert [e.event for e in runtime.memory.history(admin.id, kept.id)] == ["ADD"]
    assert runtime.users.get(admin.id).role == "admin"
    assert len(runtime.conversations.messages(conv.id, user_id=admin.id)) == 1
    # with a second admin, the first may go
    runtime.auth.create_admin("second-admin", "marmalade telescope thunder 77")
    runtime.gdpr.erase(admin, admin.id, confirm_username="only-admin")
    assert runtime.memory.count(admin.id) == 0
