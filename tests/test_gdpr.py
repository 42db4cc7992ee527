"""Download my data / delete my account, through the runtime on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import zipfile
from decimal import Decimal

import pytest
from sqlalchemy import select

from core.errors import NotFound, PermissionDenied, ValidationError
from core.gdpr import pseudonym
from core.memory.types import Scope
from core.runtime import open_runtime
from core.schema import audit_events, model_usage
from core.turn_details import TurnDetails

PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def runtime(backend, db_url, monkeypatch):
    if backend == "postgresql":
        monkeypatch.setenv("OPTIMUS_DATABASE_URL", db_url)
    monkeypatch.setenv("OPTIMUS_BCRYPT_ROUNDS", "4")
    rt = open_runtime()
    try:
        yield rt
    finally:
        rt.close()


def seed(rt, name):
    person = rt.auth.register(name, PASSWORD)
    conv = rt.conversations.create(person.id, "Trip")
    rt.conversations.append(conv.id, "user", "I am going to Kyoto in May.", user_id=person.id)
    rt.conversations.append(conv.id, "assistant", "Lovely!", user_id=person.id, details=TurnDetails())
    rec = rt.memory.add(Scope.personal(person.id), "Travels to Kyoto in May", type="fact", tags=["travel"])
    rt.memory.update(person.id, rec.id, text="Travels to Kyoto in late May")
    rt.memory.add(Scope(person.id, "api-end-user"), "End user likes jazz", type="preference")
    gone = rt.memory.add(Scope.personal(person.id), "Used to live in Osaka", type="fact")
    rt.memory.delete(person.id, gone.id)
    rt.usage.record(user_id=person.id, purpose="chat", provider="openai", model="gpt-4o", latency_ms=12,
                    input_tokens=10, output_tokens=5, cost_usd=Decimal("0.0001"), conversation_id=conv.id)
    return person, rec


def test_export_contains_everything_with_a_readme(runtime):
    person, rec = seed(runtime, "ada")
    other, _ = seed(runtime, "bob")
    blob = runtime.gdpr.export_zip(person.id, ip="127.0.0.1")
    files = zipfile.ZipFile(io.BytesIO(blob))
    assert sorted(files.namelist()) == ["README.txt", "audit.json", "conversations.json", "deleted_memories.json",
                                        "memories.json", "profile.json", "usage.json"]
    data = {n[:-5]: json.loads(files.read(n)) for n in files.namelist() if n.endswith(".json")}
    assert data["profile"]["username"] == "ada"
    assert [m["content"] for m in data["conversations"][0]["messages"]] == ["I am going to Kyoto in May.", "Lovely!"]
    memories = {m["memory"]: m for m in data["memories"]}
    assert set(memories) == {"Travels to Kyoto in late May", "End user likes jazz"}  # all scopes, not bob's
    assert [h["event"] for h in memories["Travels to Kyoto in late May"]["history"]] == ["ADD", "UPDATE"]
    (deleted,) = data["deleted_memories"]  # deleted memories' history is theirs too
    assert deleted["memory"] == "Used to live in Osaka" and deleted["deleted_by"] == "ui"
    assert [h["event"] for h in deleted["history"]] == ["ADD", "DELETE"]
    assert data["usage"][0]["cost_usd"] == "0.00010000" or Decimal(data["usage"][0]["cost_usd"]) == Decimal("0.0001")
    assert any(e["event"] == "account.create" for e in data["audit"])
    assert "memories.json" in files.read("README.txt").decode()
    assert other.id not in blob.decode("latin-1")
    with runtime.storage.engine.connect() as conn:
        events = conn.execute(select(audit_events.c.event).where(audit_events.c.subject_id == person.id)).scalars()
        assert "export" in list(events)


def test_erase_removes_everything_and_keeps_a_pseudonymous_record(runtime):
    person, rec = seed(runtime, "cleo")
    other, other_rec = seed(runtime, "dan")
    with pytest.raises(ValidationError, match="username"):
        runtime.gdpr.erase(person, person.id, confirm_username="not-cleo")
    with pytest.raises(PermissionDenied):
        runtime.gdpr.erase(other, person.id, confirm_username="cleo")
    report = runtime.gdpr.erase(person, person.id, confirm_username="cleo")
    assert (report.memories, report.conversations, report.messages) == (2, 1, 2)
    with pytest.raises(NotFound):
        runtime.users.get(person.id)
    assert runtime.memory.count(person.id) == 0
    assert runtime.memory.get(other.id, other_rec.id).text == "Travels to Kyoto in late May"
    with runtime.storage.engine.connect() as conn:
        audit = conn.execute(select(audit_events)).all()
        usage = conn.execute(select(model_usage)).all()
    assert not any(person.id in (a.actor_id or "", a.subject_id or "") for a in audit)
    assert any(a.event == "account.erase" and a.subject_id == pseudonym(person.id) for a in audit)
    assert len(usage) == 2 and sum(u.user_id is None for u in usage) == 1  # totals kept, person unlinked
    with pytest.raises(Exception):
        runtime.auth.login("cleo", PASSWORD)
