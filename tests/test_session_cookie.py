"""The login cookie through real HTTP against a running ``streamlit run app.py`` on loopback.

The test process and the server share one SQLite file and JWT secret: the test logs in and mints
the handoff token in-process (as the login page does), then drives the ``/api/session/*`` routes
with httpx and opens Streamlit sessions over its WebSocket, as a browser reload does, to see
whether ``app.py`` recognises the cookie. (The storage rules themselves are tested on both
backends in ``test_auth.py``.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from core.accounts import BROWSER_COOKIE, SESSION_COOKIE, AuthPolicy, AuthService
from core.db import make_engine, migrate, sqlite_url
from core.errors import InvalidCredentials
from tests.streamlit_server import StreamlitServer
from tests.test_auth import PASSWORD

SECRET = "cookie-test-secret-" + "c" * 40
BROWSER = "pytest-browser-" + "b" * 24  # this client's pre-session cookie, as the app sets it


class Server(StreamlitServer):
    def __init__(self, root: Path) -> None:
        super().__init__(root, OPTIMUS_JWT_SECRET=SECRET)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cookie-server")
    # Migrate before the server's first request does, so the two processes never race on it.
    engine = make_engine(sqlite_url(root / "data" / "optimus.db"))
    migrate(engine)
    engine.dispose()
    srv = Server(root)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def shared_engine(server):
    engine = make_engine(sqlite_url(server.data / "optimus.db"))
    yield engine
    engine.dispose()


def service(engine, *, clock=None) -> AuthService:
    return AuthService(engine, secret=SECRET, policy=AuthPolicy(bcrypt_rounds=4), clock=clock)


@pytest.fixture(scope="module")
def member(shared_engine):
    return service(shared_engine).register("cookie-alice", PASSWORD)


@pytest.fixture
def auth(shared_engine, member) -> AuthService:
    return service(shared_engine)


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, follow_redirects=False, timeout=30, cookies={BROWSER_COOKIE: BROWSER}) as c:
        yield c


def set_cookie(response: httpx.Response) -> SimpleCookie:
    headers = response.headers.get_list("set-cookie")
    assert len(headers) <= 1, headers
    jar = SimpleCookie()
    if headers:
        jar.load(headers[0])
    return jar


def cookie_flags(response: httpx.Response) -> set[str]:
    (header,) = response.headers.get_list("set-cookie")
    return {part.strip().lower() for part in header.split(";")[1:]}


def handoff(auth: AuthService) -> tuple[str, str]:
    login = auth.login("cookie-alice", PASSWORD, ip="127.0.0.1", user_agent="pytest")
    return auth.mint_handoff(login.session, browser=BROWSER), login.session.jti


def start(client: httpx.Client, token: str, **headers: str) -> httpx.Response:
    return client.get("/api/session/start", params={"t": token}, headers=headers)


def sending(access: str) -> dict[str, str]:
    """Headers that carry the session cookie, as the browser sends it back."""
    return {"Cookie": f"{SESSION_COOKIE}={access}; {BROWSER_COOKIE}={BROWSER}"}


# --- the Streamlit side: a new session (a reload) reads the cookie -------------------------------
async def _render(base: str, cookie: str | None) -> list[str]:
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.asyncio.client import connect

    headers = {"Origin": base}
    if cookie:
        headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    texts: list[str] = []
    url = base.replace("http://", "ws://") + "/_stcore/stream"
    async with connect(url, subprotocols=["streamlit"], additional_headers=headers, max_size=None) as ws:
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        rerun.rerun_script.page_script_hash = ""
        await ws.send(rerun.SerializeToString())
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(await asyncio.wait_for(ws.recv(), 120))
            kind = msg.WhichOneof("type")
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                if element.WhichOneof("type") == "markdown":
                    texts.append(element.markdown.body)
            elif kind == "script_finished":
                return texts


def page_texts(server: Server, cookie: str | None) -> list[str]:
    """What a fresh browser session renders with this cookie (or none)."""
    return asyncio.run(_render(server.base, cookie))


# --- tests ---------------------------------------------------------------------------------------
def test_handoff_sets_an_httponly_strict_cookie_and_redirects_home(client, auth):
    token, jti = handoff(auth)
    response = start(client, token)
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    flags = cookie_flags(response)
    assert {"httponly", "samesite=strict", "path=/", "max-age=1800"} <= flags
    assert "secure" not in flags  # plain HTTP on loopback; see the HTTPS test below
    access = set_cookie(response)[SESSION_COOKIE].value
    assert auth.verify(access).session.jti == jti
    assert token not in response.headers["location"] and access not in response.headers["location"]


def test_cookie_is_secure_behind_https(client, auth):
    token, _ = handoff(auth)
    assert "secure" in cookie_flags(start(client, token, **{"X-Forwarded-Proto": "https"}))


def test_handoff_is_single_use(client, auth):
    token, _ = handoff(auth)
    assert SESSION_COOKIE in set_cookie(start(client, token))
    again = start(client, token)
    assert again.status_code == 303 and not again.headers.get_list("set-cookie")


def test_handoff_expires_after_60_seconds(client, shared_engine, member):
    past = datetime.now(UTC) - timedelta(seconds=61)
    old = service(shared_engine, clock=lambda: past)
    token, _ = handoff(old)  # minted 61 s ago by the clock of the page that logged in
    response = start(client, token)
    assert response.status_code == 303 and not response.headers.get_list("set-cookie")
    fresh = service(shared_engine, clock=lambda: datetime.now(UTC) - timedelta(seconds=50))
    assert SESSION_COOKIE in set_cookie(start(client, handoff(fresh)[0]))


def test_a_cross_site_link_cannot_log_anyone_in(client, auth):
    token, _ = handoff(auth)
    response = start(client, token, **{"Sec-Fetch-Site": "cross-site"})
    assert not response.headers.get_list("set-cookie")
    assert SESSION_COOKIE in set_cookie(start(client, token, **{"Sec-Fetch-Site": "same-origin"}))


def test_me_answers_for_the_cookie(client, auth):
    assert client.get("/api/session/me").status_code == 401
    access = set_cookie(start(client, handoff(auth)[0]))[SESSION_COOKIE].value
    me = client.get("/api/session/me", headers=sending(access))
    assert me.status_code == 200 and me.headers["cache-control"] == "no-store"
    assert me.json()["user"]["username"] == "cookie-alice" and me.json()["user"]["role"] == "user"
    assert not me.headers.get_list("set-cookie")  # a fresh token is not renewed
    forged = access[:-2] + ("AA" if not access.endswith("AA") else "BB")
    bad = client.get("/api/session/me", headers=sending(forged))
    assert bad.status_code == 401 and "max-age=0" in cookie_flags(bad)


def test_me_renews_the_cookie_past_half_life(client, shared_engine, member):
    earlier = datetime.now(UTC) - timedelta(minutes=20)
    old = service(shared_engine, clock=lambda: earlier).login("cookie-alice", PASSWORD)
    me = client.get("/api/session/me", headers=sending(old.token))
    assert me.status_code == 200
    renewed = set_cookie(me)[SESSION_COOKIE].value
    assert renewed != old.token and {"httponly", "samesite=strict"} <= cookie_flags(me)
    assert service(shared_engine).verify(renewed).session.jti == old.session.jti


def test_reload_keeps_the_login_and_logout_clears_it(server, auth):
    assert not any("Signed in as" in t for t in page_texts(server, None))
    with httpx.Client(base_url=server.base, timeout=30, follow_redirects=True,
                      cookies={BROWSER_COOKIE: BROWSER}) as browser:  # like a browser
        landed = start(browser, handoff(auth)[0])
        assert landed.status_code == 200 and str(landed.url) == server.base + "/"  # the app's page
        access = browser.cookies[SESSION_COOKIE]
        assert browser.get("/api/session/me").json()["user"]["username"] == "cookie-alice"
        signed_in = "Signed in as **cookie-alice**"
        assert any(t.startswith(signed_in) for t in page_texts(server, access))  # a new session, as after a reload
        assert any(t.startswith(signed_in) for t in page_texts(server, access))  # and again

        out = browser.get("/api/session/end", follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/"
        assert {"httponly", "samesite=strict", "path=/", "max-age=0"} <= cookie_flags(out)
        assert SESSION_COOKIE not in browser.cookies
        assert browser.get("/api/session/me").status_code == 401
    # The session is over server-side too: the old cookie value no longer works anywhere.
    with httpx.Client(base_url=server.base, timeout=30) as other:
        assert other.get("/api/session/me", headers=sending(access)).status_code == 401
    assert not any("Signed in as" in t for t in page_texts(server, access))


def test_logout_by_post_and_without_a_cookie(client, auth):
    access = set_cookie(start(client, handoff(auth)[0]))[SESSION_COOKIE].value
    out = client.post("/api/session/end", headers=sending(access))
    assert out.status_code == 303 and "max-age=0" in cookie_flags(out)
    with pytest.raises(InvalidCredentials, match="signed out"):
        auth.verify(access)
    assert client.get("/api/session/end").status_code == 303


def test_signing_out_after_an_erasure_says_so_and_nothing_else_is_passed_on(client, auth):
    access = set_cookie(start(client, handoff(auth)[0]))[SESSION_COOKIE].value
    out = client.get("/api/session/end?farewell=erased", headers=sending(access), follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/?farewell=erased"
    for other in ("https://evil.example/", "erased&next=//evil.example", ""):
        out = client.get("/api/session/end", params={"farewell": other}, follow_redirects=False)
        assert out.headers["location"] == "/"  # only known farewells, never a redirect elsewhere
