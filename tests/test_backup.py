"""Backup and restore round trip: an archive of a live embedded install, restored into a fresh data
dir, brings back the same users, conversations, messages, memories, history and vectors."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from core.backup import create_backup, read_manifest, restore_backup
from core.config import load_settings
from core.errors import ConfigError, ValidationError
from core.memory.types import Scope
from core.runtime import open_runtime
from tests.conftest import MODEL_CACHE

QUERIES = ["where does she live", "what does she eat", "her sister", "music she likes"]


def settings_for(data_dir: Path, **extra):
    return load_settings(data_dir=data_dir, model_cache_dir=MODEL_CACHE, embedder_backend="onnx",
                         fallback_model="none", **extra)


@pytest.fixture
def live(tmp_path):
    runtime = open_runtime(settings_for(tmp_path / "live"))
    try:
        ada = runtime.users.create("ada")
        bob = runtime.users.create("bob")
        for person in (ada, bob):
            conv = runtime.conversations.create(person.id, "First chat")
            for i in range(3):
                runtime.conversations.append(conv.id, "user", f"message {i} of {person.username}", user_id=person.id)
        scope = Scope.personal(ada.id)
        memory = runtime.memory
        memory.add_many(scope, ["Lives in Lisbon", "Is vegetarian", "Sister Ana is a nurse in Porto",
                                "Loves jazz and bossa nova", "Plays the cello on Sundays"])
        changed = memory.get_all(ada.id, limit=10)[0]
        memory.update(ada.id, changed.id, text=changed.text + " with friends")  # an UPDATE in history
        memory.delete(ada.id, memory.get_all(ada.id, limit=10)[-1].id)  # a DELETE in history
        memory.add(Scope.personal(bob.id), "Works at a museum")
        yield runtime
    finally:
        runtime.close()


def test_a_backup_restored_into_a_fresh_data_dir_has_everything(live, tmp_path):
    ada = live.users.find_by_username("ada")
    before = {q: [r.id for r in live.memory.search(ada.id, q, top_k=3)] for q in QUERIES}
    report = create_backup(live, tmp_path / "backups")
    assert report.path.is_file() and report.path.stat().st_mode & 0o077 == 0  # private to its owner
    assert (report.counts.users, report.counts.memories) == (2, 5)
    assert report.counts.history == 8  # 6 ADD, 1 UPDATE, 1 DELETE
    live.memory.add(Scope.personal(ada.id), "Added after the backup")  # not in the archive

    restored_dir = tmp_path / "restored"
    counts = restore_backup(report.path, restored_dir)
    assert counts == report.counts
    restored = open_runtime(settings_for(restored_dir))
    try:
        assert {u.username for u in restored.users.list_users()} == {"ada", "bob"}
        again = restored.users.find_by_username("ada")
        assert again.id == ada.id
        convs = restored.conversations.list(ada.id)
        assert [m.content for m in restored.conversations.messages(convs[0].id, user_id=ada.id)] == [
            f"message {i} of ada" for i in range(3)]
        assert restored.memory.count() == 5
        assert sorted(r.text for r in restored.memory.get_all(ada.id, limit=10)) == sorted(
            r.text for r in live.memory.get_all(ada.id, limit=10) if r.text != "Added after the backup")
        for q, ids in before.items():  # the vectors came back: same results, same order
            assert [r.id for r in restored.memory.search(ada.id, q, top_k=3)] == ids
        some = restored.memory.get_all(ada.id, limit=1)[0]
        assert [h.event for h in restored.memory.history(ada.id, some.id)][0] == "ADD"
    finally:
        restored.close()


def test_restore_refuses_a_non_empty_data_dir_and_a_foreign_file(live, tmp_path):
    report = create_backup(live, tmp_path / "backups")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "optimus.db").write_text("live data")
    with pytest.raises(ValidationError, match="not empty"):
        restore_backup(report.path, busy)
    assert (busy / "optimus.db").read_text() == "live data"
    junk = tmp_path / "junk.tar.gz"
    with tarfile.open(junk, "w:gz") as tar:
        tar.add(__file__, arcname="manifest.json")
    with pytest.raises(ValidationError, match="not an Optimus backup"):
        read_manifest(junk)


def test_server_and_ephemeral_installs_are_told_what_to_use_instead(tmp_path):
    runtime = open_runtime(settings_for(tmp_path / "eph", storage="ephemeral"))
    try:
        with pytest.raises(ConfigError, match="nothing to keep"):
            create_backup(runtime, tmp_path / "backups")
    finally:
        runtime.close()
