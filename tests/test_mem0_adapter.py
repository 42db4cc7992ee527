"""mem0 at the centre, its internals in one place: every private part of mem0 Optimus uses is in
core/memory/mem0_adapter.py, and this test fails loudly, naming the mem0 version, if an upgrade
moves one of them."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata

import pytest

from core.memory.mem0_adapter import check_mem0_internals
from tests.conftest import REPO


def test_the_installed_mem0_still_has_every_internal_optimus_uses():
    check_mem0_internals()


def test_a_moved_internal_is_named_with_the_mem0_version(monkeypatch):
    from mem0.vector_stores.qdrant import Qdrant

    monkeypatch.delattr(Qdrant, "_create_filter")
    with pytest.raises(RuntimeError, match=re.escape(f"mem0 {metadata.version('mem0ai')}")) as exc:
        check_mem0_internals()
    assert "Qdrant._create_filter" in str(exc.value)


def test_no_other_module_reaches_into_mem0_internals():
    private = re.compile(r"\._create_filter|\._bm25_encoder|\._build_field_condition|\bmemory\.db\b|"
                         r"provider_to_class|_provider_configs|mem0\.utils\.lemmatization")
    found = subprocess.run(["git", "grep", "-nE", private.pattern, "--", "core", "pages", "app.py"],
                           cwd=REPO, capture_output=True, text=True).stdout.splitlines()
    assert [line for line in found if not line.startswith("core/memory/mem0_adapter.py")] == []
