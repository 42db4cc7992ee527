"""Who is signed in to this Streamlit session, and how a login reaches the browser's cookie.

A session is proven by an access token, looked for in this order:

1. ``st.session_state["auth_token"]``: set by a login in this tab (and replaced on renewal);
2. the HttpOnly ``optimus_session`` cookie, read from ``st.context.cookies`` when the session
   starts, so a reload keeps the login;
3. an OIDC identity from ``st.login`` (when an ``[auth]`` table is configured), mapped to a local
   user by :meth:`core.accounts.AuthService.user_for_oidc`.

Streamlit cannot set cookies, so after the password check :func:`send_to_cookie_route` sends the
browser to ``/api/session/start`` with a 60-second single-use handoff token; that route (in
``app.py``) sets the cookie and redirects to ``/``.
"""

from __future__ import annotations

import json

import streamlit as st

from core.accounts import BROWSER_COOKIE, SESSION_COOKIE, Login, Verified
from core.errors import AppError, InvalidCredentials
from core.proxies import client_address
from core.runtime import Runtime
from core.users import User

TOKEN_KEY = "auth_token"
START_ROUTE = "/api/session/start"
END_ROUTE = "/api/session/end"
ME_ROUTE = "/api/session/me"


def current_session(runtime: Runtime) -> Verified | None:
    """The verified local session of this Streamlit session, or None."""
    for token in (st.session_state.get(TOKEN_KEY), st.context.cookies.get(SESSION_COOKIE)):
        if not token:
            continue
        try:
            verified = runtime.auth.verify(token)
        except InvalidCredentials:
            st.session_state.pop(TOKEN_KEY, None)
            continue
        # The cookie keeps the token it was given; the tab carries the renewed one from now on.
        st.session_state[TOKEN_KEY] = verified.renewed_token or token
        return verified
    return None


def current_user(runtime: Runtime) -> User | None:
    """The signed-in user (local session first, then ``st.login``), or None."""
    verified = current_session(runtime)
    if verified is not None:
        return verified.user
    if not st.user.get("is_logged_in", False):  # st.user.is_logged_in raises without an [auth] table
        return None
    try:
        return runtime.auth.user_for_oidc(
            str(st.user.get("iss") or ""), str(st.user.get("sub") or ""), email=st.user.get("email"),
            preferred_username=st.user.get("preferred_username"), name=st.user.get("name"),
            ip=client_ip(),
        )
    except AppError:
        return None


def client_ip() -> str | None:
    """The person's address: the connection's, or the one a trusted reverse proxy forwards for
    (``OPTIMUS_TRUSTED_PROXIES``). None outside a real server (e.g. AppTest)."""
    headers = st.context.headers
    ip = st.context.ip_address
    if not isinstance(ip, str):
        if not headers:
            return None
        # A real connection whose address Streamlit hides: it does so for loopback only.
        ip = "::1" if headers.get("Host", "").startswith("[::1]") else "127.0.0.1"
    from ui.common import get_runtime

    forwarded = headers.get("X-Forwarded-For")
    return client_address(ip, forwarded if isinstance(forwarded, str) else None,
                          get_runtime().settings.trusted_networks)


def user_agent() -> str | None:
    agent = st.context.headers.get("User-Agent")
    return agent if isinstance(agent, str) else None


def send_to_cookie_route(runtime: Runtime, login: Login) -> None:
    """Keep ``login`` for this tab and send the browser to the route that sets the HttpOnly cookie.

    The hand-off is bound to this browser's pre-session cookie; a browser without one (cookies off)
    stays signed in in this tab only."""
    st.session_state[TOKEN_KEY] = login.token
    browser = st.context.cookies.get(BROWSER_COOKIE)
    if not browser:
        st.rerun()
    handoff = runtime.auth.mint_handoff(login.session, browser=browser)
    target = json.dumps(f"{START_ROUTE}?t={handoff}")  # a JS string literal; the token is URL-safe
    # replace(): the handoff URL does not stay in the history; the route answers with a redirect to /.
    st.html(f"<script>window.location.replace({target});</script>", unsafe_allow_javascript=True)


def forget_session() -> None:
    """Forget this tab's token (the cookie is cleared by the ``/api/session/end`` route)."""
    st.session_state.pop(TOKEN_KEY, None)


def send_to_end_route(*, farewell: str | None = None) -> None:
    """Forget this tab's token and send *this* tab to the route that ends the session and clears the
    cookie (``st.link_button`` would open the route in a new tab and leave this one signed in).

    ``farewell`` (one of ``app.FAREWELLS``) makes the sign-in page say why the person is signed out."""
    forget_session()
    target = END_ROUTE + (f"?farewell={farewell}" if farewell else "")
    st.html(f"<script>window.location.replace({json.dumps(target)});</script>", unsafe_allow_javascript=True)
