"""Threat model: flooding the REST API to guess keys, to outrun the limits, or to exhaust memory.

Attackers: anyone who can reach the API port (no key needed), and account holders with many keys.

* Guessing keys: requests with invalid keys were never limited (400 in 0.4 s, no 429); the
  address is now limited before the key is looked up.
* Outrunning the limit: every key had its own bucket, so 50 keys gave one account 50× the limit;
  the limit is now per account. Refused requests still counted as uses of the key.
* Behind a reverse proxy every client is the proxy's address; the proxies listed in
  ``OPTIMUS_TRUSTED_PROXIES`` are believed about who they forward for, anybody else is not.
* Exhausting memory through metrics: the raw HTTP method was a metric label, so 5,000 made-up
  methods grew ``/metrics`` to 7.2 MB (and the process with it); every label now comes from a
  closed set.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from core.api.app import create_app
from core.apikeys import ApiKeyStore
from core.runtime import Runtime, open_runtime
from tests.test_api import account, api_settings, http, serve


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Iterator[Runtime]:
    rt = open_runtime(api_settings(tmp_path_factory.mktemp("flood")))
    try:
        yield rt
    finally:
        rt.close()


def limited(runtime: Runtime, **limits) -> object:
    return create_app(runtime, settings=runtime.settings.model_copy(update=limits))


def test_guessing_keys_is_limited_per_address_before_any_key_is_looked_up(runtime):
    _, key = account(runtime)
    app = limited(runtime, api_rate_limit_per_address_per_minute=20, api_rate_limit_per_minute=1000)
    with serve(app) as url:
        codes = []
        for i in range(40):
            with http(url, f"om_{i:043d}") as c:
                codes.append(c.get("/v1/ping/").status_code)
        assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}
        with http(url, key) as c:  # the address is spent, whatever key it shows now
            r = c.get("/v1/ping/")
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            assert "this address may make 20 per minute" in r.json()["detail"]


def test_many_keys_of_one_account_share_one_limit_and_refusals_are_not_uses(runtime):
    owner_id, first = account(runtime)
    store = ApiKeyStore(runtime.storage.engine)
    keys = [first] + [store.create(owner_id, f"extra {i}")[1] for i in range(9)]
    _, other_key = account(runtime)
    with serve(limited(runtime, api_rate_limit_per_minute=5)) as url:
        codes = []
        for key in keys * 2:
            with http(url, key) as c:
                codes.append(c.get("/v1/ping/").status_code)
        assert codes.count(200) == 5 and codes.count(429) == 15
        with http(url, other_key) as c:  # another account has its own allowance
            assert c.get("/v1/ping/").status_code == 200
    uses = sum(k.usage_count for k in store.for_owner(owner_id))
    assert uses == 5  # only accepted requests count as uses


def test_forwarded_for_separates_clients_only_behind_a_trusted_proxy(runtime):
    _, key = account(runtime)
    behind_proxy = limited(runtime, api_rate_limit_per_address_per_minute=3, trusted_proxies=["127.0.0.1"])
    with serve(behind_proxy) as url, http(url, key) as c:
        assert [c.get("/v1/ping/", headers={"X-Forwarded-For": "203.0.113.1"}).status_code
                for _ in range(4)] == [200, 200, 200, 429]
        assert c.get("/v1/ping/", headers={"X-Forwarded-For": "203.0.113.2"}).status_code == 200
    not_trusted = limited(runtime, api_rate_limit_per_address_per_minute=3)
    with serve(not_trusted) as url, http(url, key) as c:  # a client cannot pick a fresh address per request
        codes = [c.get("/v1/ping/", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]


def raw_request(url: str, method: str) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"{method} /v1/ping/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_made_up_methods_and_paths_cannot_grow_the_metrics(runtime):
    with serve(create_app(runtime)) as url:
        with http(url) as c:
            before = len(c.get("/metrics").content)
        for i in range(500):
            raw_request(url, f"X{i:04d}")
        with http(url) as c:
            for i in range(200):
                c.get(f"/no/such/path/{i}")
            text = c.get("/metrics").text
    assert len(text.encode()) - before < 10_000, len(text.encode()) - before
    assert 'method="other"' in text and "X0001" not in text and "/no/such/path" not in text
    assert 'route="unmatched"' in text
