"""Threat model: an account reaches memories that are not its own, or more of its own than it asked for.

Attacker: an account holder with an API key (the same rules hold for the pages and agent tools,
which call the same ``MemoryService``). Goal: read, change or delete another account's memories
by naming their ids, their end-user ids or the wildcard; or widen a delete of one's own memories
beyond what was asked through ``"*"``.

What must hold:

* every memory belongs to one owner account; another owner's memory id is answered exactly like an
  id that does not exist, by every route;
* ``"*"`` has one meaning everywhere — on ``user_id``, ``agent_id`` and ``run_id`` in filters,
  deletes and the entity routes it means "has a value, whatever it is" — on both backends, so
  ``agent_id=*`` never reaches memories without an agent; it is never stored as an id;
* nothing done with a wildcard crosses owners.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from core.api.app import create_app
from core.errors import ValidationError
from core.memory.service import MemoryFilters
from core.memory.types import Scope
from core.runtime import Runtime, open_runtime
from tests.memory_fixtures import open_service
from tests.test_api import account, api_settings, http, serve


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Iterator[Runtime]:
    rt = open_runtime(api_settings(tmp_path_factory.mktemp("isolation")))
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture(scope="module")
def api(runtime) -> Iterator[str]:
    with serve(create_app(runtime)) as url:
        yield url


def seed(client, user: str) -> dict[str, str]:
    """One memory per shape of scope for ``user``: no agent, agent a1, agent a2, run r1."""
    ids = {}
    for label, extra in (("plain", {}), ("agent-a1", {"agent_id": "a1"}), ("agent-a2", {"agent_id": "a2"}),
                         ("run-r1", {"run_id": "r1"})):
        r = client.post("/v1/optimus/memories/", json={"text": f"{user} {label} note", "user_id": user, **extra})
        assert r.status_code == 201, r.text
        ids[label] = r.json()["id"]
    return ids


def listed(client, **filters) -> set[str]:
    return {m["id"] for m in client.post("/v3/memories/", json={"filters": filters}).json()["results"]}


def test_agent_wildcard_in_a_delete_never_reaches_memories_without_an_agent(api, runtime):
    _, key = account(runtime)
    _, other_key = account(runtime)
    with http(api, key) as c, http(api, other_key) as other:
        u = seed(c, "alice")
        bob = seed(c, "bob")
        theirs = seed(other, "alice")  # same end-user name in another account
        r = c.delete("/v1/memories/", params={"user_id": "alice", "agent_id": "*"})
        assert r.status_code == 200 and r.json()["deleted"] == 2
        assert listed(c, user_id="alice") == {u["plain"], u["run-r1"]}  # no agent: untouched
        assert listed(c, user_id="bob") == set(bob.values())
        assert listed(other) == set(theirs.values())


def test_wildcard_means_has_a_value_in_lists_and_entity_deletes(api, runtime):
    _, key = account(runtime)
    _, other_key = account(runtime)
    with http(api, key) as c, http(api, other_key) as other:
        u = seed(c, "carol")
        theirs = seed(other, "carol")
        assert listed(c, agent_id="*") == {u["agent-a1"], u["agent-a2"]}
        assert listed(c, run_id="*") == {u["run-r1"]}
        assert listed(c, user_id="*") == set(u.values())
        assert listed(c, AND=[{"user_id": "carol"}, {"agent_id": "*"}]) == {u["agent-a1"], u["agent-a2"]}
        r = c.delete("/v2/entities/agent/*/")  # "every agent's memories", never the agentless ones
        assert r.status_code == 200 and r.json()["deleted"] == 2
        assert listed(c) == {u["plain"], u["run-r1"]}
        assert listed(other) == set(theirs.values())
        assert c.delete("/v1/memories/", params={"user_id": "*"}).json()["deleted"] == 2
        assert listed(c) == set() and listed(other) == set(theirs.values())


def test_the_wildcard_is_never_stored_as_an_id(api, runtime):
    _, key = account(runtime)
    with http(api, key) as c:
        for path, body in (("/v1/optimus/memories/", {"text": "x", "user_id": "*"}),
                           ("/v1/optimus/memories/", {"text": "x", "agent_id": "*"}),
                           ("/v1/optimus/memories/batch/", {"run_id": "*", "items": [{"text": "x"}]}),
                           ("/v3/memories/add/", {"messages": [{"role": "user", "content": "x"}], "user_id": "*",
                                                  "infer": False})):
            r = c.post(path, json=body)
            assert r.status_code == 422, (path, body, r.text)
            assert '"*"' in r.json()["detail"][0]["msg"]
        assert listed(c) == set()


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_one_meaning_of_the_wildcard_on_both_backends(backend, tmp_path):
    svc, _users, close = open_service(backend, tmp_path)
    try:
        owner, stranger = "owner-w", "stranger-w"
        plain = svc.add(Scope(owner, "u1"), "No agent here")
        with_agent = svc.add(Scope(owner, "u1", agent_id="planner"), "Planner note")
        foreign = svc.add(Scope(stranger, "u1", agent_id="planner"), "Stranger's planner note")
        assert [r.id for r in svc.get_all(owner, MemoryFilters(agent_id="*"))] == [with_agent.id]
        assert {r.id for r in svc.search(owner, "note", MemoryFilters(user_id="u1", agent_id="*"))} == {with_agent.id}
        assert svc.count_matching(owner, MemoryFilters(run_id="*")) == 0
        assert svc.delete_all(owner, user_id="u1", agent_id="*") == 1
        assert [r.id for r in svc.get_all(owner)] == [plain.id]
        assert svc.get(stranger, foreign.id).text == "Stranger's planner note"
        with pytest.raises(ValidationError, match=r'"\*"'):
            svc.add(Scope(owner, "*"), "never stored")
    finally:
        close()


def test_another_owners_ids_are_missing_on_every_route(api, runtime):
    _, key = account(runtime)
    _, victim_key = account(runtime)
    with http(api, victim_key) as v:
        secret = v.post("/v1/optimus/memories/", json={"text": "The victim's secret", "user_id": "shared"}).json()["id"]
        history_id = v.get(f"/v1/memories/{secret}/history/").json()[0]["id"]
    with http(api, key) as c:
        missing = c.get(f"/v1/memories/{uuid.uuid4()}/").json()
        for method, path, body in [
            ("GET", f"/v1/memories/{secret}/", None),
            ("PUT", f"/v1/memories/{secret}/", {"text": "hijacked"}),
            ("GET", f"/v1/memories/{secret}/history/", None),
            ("DELETE", f"/v1/memories/{secret}/", None),
            ("PUT", "/v1/batch/", {"memories": [{"memory_id": secret, "text": "x"}]}),
            ("DELETE", "/v1/batch/", {"memories": [{"memory_id": secret}]}),
            ("POST", f"/v1/optimus/memories/{secret}/revert/", {"history_id": history_id}),
        ]:
            r = c.request(method, path, json=body)
            assert r.status_code == 404 and "secret" not in r.text, (method, path, r.text)
            if method == "GET" and path.endswith(f"{secret}/"):
                assert r.json() == missing
        assert c.delete("/v1/memories/", params={"user_id": "shared"}).json()["deleted"] == 0
        assert c.delete("/v2/entities/user/shared/").json()["deleted"] == 0
        assert c.post("/v3/memories/search/", json={"query": "victim secret"}).json()["results"] == []
        assert c.get("/v1/optimus/stats/", params={"user_id": "shared"}).json()["total"] == 0
    with http(api, victim_key) as v:
        assert v.get(f"/v1/memories/{secret}/").json()["memory"] == "The victim's secret"
        assert [h["event"] for h in v.get(f"/v1/memories/{secret}/history/").json()] == ["ADD"]
