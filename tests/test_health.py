from core.conversations import ConversationStore
from core.db import make_engine, sqlite_url
from core.health import collect_health
from core.runtime import open_runtime
from core.storage import Storage
from tests.pgserver import free_port


def test_report_counts_and_components(backend, db_url, monkeypatch):
    if backend == "postgresql":
        monkeypatch.setenv("OPTIMUS_DATABASE_URL", db_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")  # a configured provider: models are "ok"
    runtime = open_runtime()
    try:
        user = runtime.users.create("ada")
        conv = runtime.conversations.create(user.id)
        runtime.conversations.append(conv.id, "user", "hello")
        runtime.conversations.append(conv.id, "assistant", "hi Ada")
        report = runtime.health()
        assert report.status == "ok" and report.mode == "embedded"
        assert report.counts == {"users": 1, "conversations": 1, "messages": 2, "memories": 0, "pending_extractions": 0}
        names = [c.name for c in report.components]
        assert names == ["database", "data directory", "vector store", "extraction queue", "models"]
        assert "providers: anthropic" in report.components[4].detail
        assert all(c.ok for c in report.components), report.components
        assert "Qdrant Edge" in report.components[2].detail
        assert ("PostgreSQL" if backend == "postgresql" else "SQLite (WAL)") in report.components[0].detail
        assert report.sizes["database_bytes"] > 0
        assert report.as_dict()["counts"]["messages"] == 2
    finally:
        runtime.close()


def test_database_down_is_reported_not_raised(tmp_path):
    engine = make_engine(f"postgresql+psycopg://optimus@127.0.0.1:{free_port()}/x", connect_timeout=1)
    storage = Storage("server", "server", engine, tmp_path, None, ":memory:")
    report = collect_health(storage)
    assert report.status == "down"
    assert not report.components[0].ok and "unreachable" in report.components[0].detail
    assert report.counts == {}


def test_extra_probes_are_included_and_a_crashing_probe_is_down(tmp_path):
    from core.db import migrate
    from core.health import ComponentStatus

    engine = make_engine(sqlite_url(tmp_path / "h.db"))
    migrate(engine)
    storage = Storage("embedded", "embedded", engine, tmp_path, tmp_path / "vectors", None)

    def vector_store():
        return ComponentStatus("vector store", True, "fine")

    def queue():
        raise RuntimeError("queue table missing")

    report = collect_health(storage, probes=[vector_store, queue])
    assert [c.name for c in report.components][2:] == ["vector store", "queue"]
    assert report.status == "degraded" and "queue table missing" in report.components[3].detail
    ConversationStore(engine)  # engine still usable
    engine.dispose()


def test_no_model_at_all_is_reported(monkeypatch):
    runtime = open_runtime()
    monkeypatch.setattr(runtime.registry, "_local_factory", None)
    try:
        models = runtime.health().components[-1]
        assert models.name == "models" and not models.ok and "none configured" in models.detail
    finally:
        runtime.close()
