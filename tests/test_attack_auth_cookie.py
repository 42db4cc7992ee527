"""Threat model: getting into, or planting, an account without knowing its password.

Attackers: someone who can make a victim's browser open a link (mail, chat, another site); someone
guessing passwords from one address or from behind a proxy; someone with a leaked password of an
account an admin has locked.

* **Login CSRF**: the attacker signs in to their own account, keeps the 60-second hand-off link,
  and gets the victim's browser to open it; the victim then works, unknowingly, in the attacker's
  account (and tells it things). Browsers opening a link from a mail app send
  ``Sec-Fetch-Site: none``; older ones send no Sec-Fetch headers at all. Every hand-off must be
  bound to the browser that signed in.
* **Unknown addresses**: Streamlit reports loopback peers — every client behind a same-host
  reverse proxy — as having no address. "No address" must be one address for the per-address
  limit, never a way around it; a proxy listed in ``OPTIMUS_TRUSTED_PROXIES`` is believed about
  who it forwards for, and nobody else is.
* **Locked accounts**: a correct password on an admin-locked account must answer exactly like a
  wrong one, or the lock turns into a password oracle.
"""

from __future__ import annotations

import httpx
import pytest

from core.accounts import BROWSER_COOKIE, SESSION_COOKIE
from core.config import load_settings
from core.errors import CaptchaRequired, ConfigError, InvalidCredentials, TooManyAttempts
from core.proxies import client_address, parse_networks
from tests.test_auth import OTHER_PASSWORD, PASSWORD, Clock, make_auth, solve
from tests.test_session_cookie import (  # noqa: F401 - fixtures: a real `streamlit run app.py`
    BROWSER,
    auth,
    client,
    member,
    server,
    set_cookie,
    shared_engine,
    start,
)

ATTACKER_BROWSER = "attackers-own-browser-" + "a" * 20


# ------------------------------------------------------------------ login CSRF
def attackers_link(auth) -> str:
    """The hand-off an attacker gets after signing in to their own account in their own browser."""
    login = auth.login("cookie-alice", PASSWORD, ip="203.0.113.66")
    return auth.mint_handoff(login.session, browser=ATTACKER_BROWSER)


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}, {},
                                     {"Sec-Fetch-Site": "same-origin"}],
                         ids=["opened-from-a-mail-app", "browser-without-sec-fetch", "claims-same-origin"])
def test_a_handoff_minted_in_another_browser_signs_nobody_in(server, auth, headers):
    token = attackers_link(auth)
    with httpx.Client(base_url=server.base, follow_redirects=False, timeout=30,
                      cookies={BROWSER_COOKIE: BROWSER}) as victim:  # the victim's own pre-session cookie
        response = victim.get("/api/session/start", params={"t": token}, headers=headers)
        assert response.status_code == 303 and SESSION_COOKIE not in response.headers.get("set-cookie", "")
        assert victim.get("/api/session/me").status_code == 401
    with httpx.Client(base_url=server.base, follow_redirects=False, timeout=30,
                      cookies={BROWSER_COOKIE: ATTACKER_BROWSER}) as attacker:
        used = attacker.get("/api/session/start", params={"t": token})  # and the link is used up
        assert SESSION_COOKIE not in used.headers.get("set-cookie", "")


def test_a_browser_without_the_pre_session_cookie_is_signed_in_by_nobody(server, auth):
    token = attackers_link(auth)
    with httpx.Client(base_url=server.base, follow_redirects=False, timeout=30) as fresh:
        response = fresh.get("/api/session/start", params={"t": token})
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_every_browser_gets_its_pre_session_cookie_with_the_first_page(server):
    with httpx.Client(base_url=server.base, timeout=30) as browser:
        first = browser.get("/")
        header = first.headers.get("set-cookie", "")
        assert header.startswith(f"{BROWSER_COOKIE}=")
        assert {"httponly", "samesite=strict", "path=/"} <= {p.strip().lower() for p in header.split(";")[1:]}
        value = browser.cookies[BROWSER_COOKIE]
        assert len(value) >= 24
        again = browser.get("/")
        assert BROWSER_COOKIE not in again.headers.get("set-cookie", "") and browser.cookies[BROWSER_COOKIE] == value
    with httpx.Client(base_url=server.base, timeout=30) as other:
        other.get("/")
        assert other.cookies[BROWSER_COOKIE] != value  # one per browser


def test_the_same_browser_still_signs_in(client, auth):
    login = auth.login("cookie-alice", PASSWORD, ip="127.0.0.1")
    token = auth.mint_handoff(login.session, browser=BROWSER)
    assert SESSION_COOKIE in set_cookie(start(client, token))


# ------------------------------------------------------------------ unknown addresses, trusted proxies
def test_logins_from_unknown_addresses_share_one_limit(engine):
    clock = Clock()
    auth = make_auth(engine, clock)
    auth.register("victim-u", PASSWORD)
    limit = auth.policy.ip_max_failures
    for i in range(limit):  # a different username each time: only the address can stop this
        with pytest.raises(InvalidCredentials):
            auth.login(f"guess-{i}", "not the password", ip=None)
    with pytest.raises(TooManyAttempts, match="network address"):
        auth.login("victim-u", PASSWORD, ip=None)
    assert auth.login("victim-u", PASSWORD, ip="198.51.100.4").user.username == "victim-u"  # others unaffected
    clock.advance(minutes=auth.policy.login_window.total_seconds() / 60 + 1)
    assert auth.login("victim-u", PASSWORD, ip=None).user.username == "victim-u"


PROXY = parse_networks(["127.0.0.1", "::1", "10.0.0.0/8"])


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "client_is"), [
    ("127.0.0.1", "203.0.113.5", PROXY, "203.0.113.5"),  # a trusted proxy names the client
    ("127.0.0.1", "203.0.113.5", [], "127.0.0.1"),  # nobody trusted: the header means nothing
    ("198.51.100.9", "203.0.113.5", PROXY, "198.51.100.9"),  # a client writing the header itself
    ("127.0.0.1", "1.1.1.1, 203.0.113.5", PROXY, "203.0.113.5"),  # what the client wrote is left of it
    ("127.0.0.1", "203.0.113.5, 10.0.0.7", PROXY, "203.0.113.5"),  # through two trusted proxies
    ("10.0.0.7", "not-an-address", PROXY, "10.0.0.7"),
    ("::1", "2001:db8::1", PROXY, "2001:db8::1"),
    ("127.0.0.1", None, PROXY, "127.0.0.1"),
    (None, "203.0.113.5", PROXY, None),  # no peer at all: unknown (one shared address for limits)
])
def test_forwarded_for_is_believed_only_from_trusted_proxies(peer, forwarded, trusted, client_is):
    assert client_address(peer, forwarded, trusted) == client_is


def test_the_trusted_proxy_setting_refuses_what_is_not_an_address():
    assert load_settings(trusted_proxies="127.0.0.1, 10.0.0.0/8").trusted_networks == PROXY[::2]
    with pytest.raises(ConfigError, match="OPTIMUS_TRUSTED_PROXIES"):
        load_settings(trusted_proxies="127.0.0.1, proxy.internal")


# ------------------------------------------------------------------ locked accounts
def answers(auth, username: str, password: str, ip: str, attempts: int = 6) -> list[tuple[str, str]]:
    """What a person trying ``password`` again and again sees, answering each CAPTCHA correctly."""
    outcomes, captcha = [], None
    for _ in range(attempts):
        extra = {} if captcha is None else {"captcha_id": captcha.captcha_id, "captcha_answer": solve(captcha.question)}
        try:
            auth.login(username, password, ip=ip, **extra)
            outcomes.append(("signed in", ""))
        except InvalidCredentials as exc:
            captcha = exc if isinstance(exc, CaptchaRequired) else None
            outcomes.append((type(exc).__name__, exc.message))
    return outcomes


def test_a_locked_account_answers_a_right_password_like_a_wrong_one(engine):
    auth = make_auth(engine, Clock())
    admin = auth.create_admin("root-l", OTHER_PASSWORD)
    for name in ("locked-right", "locked-wrong"):
        auth.lock_user(admin, auth.register(name, PASSWORD).id)
    with_right_password = answers(auth, "locked-right", PASSWORD, "192.0.2.51")
    with_wrong_password = answers(auth, "locked-wrong", "a wrong password", "192.0.2.52")
    unknown_user = answers(auth, "nobody-here-l", "a wrong password", "192.0.2.53")
    assert with_right_password == with_wrong_password == unknown_user
    assert ("signed in", "") not in with_right_password
