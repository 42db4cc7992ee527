"""The process's shared runtime: one for the pages, the REST API and MCP of the Streamlit server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from core.config import reset_settings_cache
from core.errors import ConfigError
from core.memory.service import MemoryFilters
from core.memory.types import Scope
from core.runtime import close_shared_runtime, shared_runtime


@pytest.fixture(autouse=True)
def closed_after() -> Iterator[None]:
    close_shared_runtime()
    try:
        yield
    finally:
        close_shared_runtime()


def test_every_thread_gets_the_same_runtime_opened_once_with_its_worker(isolated_settings, monkeypatch):
    monkeypatch.setenv("OPTIMUS_SCRIPTED_MODELS", "true")
    monkeypatch.setenv("OPTIMUS_MEMORY_MODEL", "test:memory")
    reset_settings_cache()
    got, errors = [], []
    start = threading.Barrier(8)

    def open_one() -> None:
        start.wait()
        try:
            got.append(shared_runtime())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(got) == 8 and len({id(r) for r in got}) == 1
    runtime = got[0]
    user = runtime.users.create("shared-one")
    assert shared_runtime().users.get(user.id).username == "shared-one"
    # Its worker learns in the background: a queued exchange becomes a memory with nobody waiting.
    runtime.learning.enqueue(Scope(owner_id=user.id, user_id=user.id),
                             [{"role": "user", "content": "I grow lemons on my balcony."}])
    deadline = time.monotonic() + 60
    while not runtime.memory.get_all(user.id, MemoryFilters()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [m.text for m in runtime.memory.get_all(user.id, MemoryFilters())] == ["Grows lemons on their balcony"]


def test_a_failed_open_is_tried_again_on_the_next_call(isolated_settings, monkeypatch):
    monkeypatch.setenv("OPTIMUS_STORAGE", "cloud")
    reset_settings_cache()
    with pytest.raises(ConfigError) as failed:
        shared_runtime()
    assert "OPTIMUS_STORAGE" in failed.value.message
    monkeypatch.delenv("OPTIMUS_STORAGE")
    reset_settings_cache()
    runtime = shared_runtime()  # the operator fixed the setting: no restart of the process needed
    assert runtime.storage.mode == "embedded"


def test_closing_lets_the_next_call_open_a_new_one(isolated_settings):
    first = shared_runtime()
    close_shared_runtime()
    second = shared_runtime()
    assert second is not first
    close_shared_runtime()
    close_shared_runtime()  # closing twice is harmless
