"""Optimus entrypoint: ``streamlit run app.py`` (or ``uvicorn app:app``).

This module is two things:

* the ASGI app, ``app = st.App(...)``: Streamlit plus the session-cookie routes below, served on
  the same port. Streamlit owns ``/auth/*`` (``st.login``), so ours live under ``/api/session/``;
* the Streamlit script (router and start-up gate; pages live in ``pages/``), which runs only
  inside a Streamlit runtime, i.e. for each browser session, never when the module is imported.

Cookie routes (the cookie is ``optimus_session``: HttpOnly, SameSite=Strict, Path=/, Secure
over HTTPS; it holds the access token and expires with it):

* ``GET /api/session/start?t=HANDOFF``: trade a 60-second single-use handoff token (minted after
  the password check, see ``pages/auth_session.py``) for the cookie, then 303 to ``/``;
* ``GET|POST /api/session/end``: end the cookie's session, clear the cookie, 303 to ``/`` (with
  ``?farewell=erased`` passed on, so the sign-in page can confirm an account deletion);
* ``GET /api/session/me``: the cookie's user as JSON (401 without a valid one); renews the
  cookie when the token is past half its life.
"""

import functools
import logging
from collections.abc import Callable

import streamlit as st
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from core.auth import SESSION_COOKIE, AuthService
from core.devices import client_address, parse_networks
from core.errors import AppError, InvalidCredentials

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("alembic").setLevel(logging.WARNING)
log = logging.getLogger("optimus.app")


def _auth() -> AuthService:
    # The same cached runtime the pages use: one per server process, opened by whoever comes first.
    from pages.common import get_runtime

    return get_runtime().auth


def _route(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """Private, uncached responses; a runtime that cannot open answers 503 with the reason."""

    @functools.wraps(handler)
    def wrapper(request: Request) -> Response:
        try:
            response = handler(request)
        except AppError as exc:  # bad settings or unreachable storage, as the start-up page says
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
            response = JSONResponse({"error": exc.message}, status_code=503)
        return _private(response)

    return wrapper


def _private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the handoff URL must not leak onwards
    return response


def _client_address(request: Request) -> str | None:
    from pages.common import get_runtime

    trusted = parse_networks(get_runtime().settings.trusted_proxies)
    return client_address(request.client.host if request.client else None, request.headers.get("x-forwarded-for"),
                          trusted_proxies=trusted)


def _https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _cross_site(request: Request) -> bool:
    # Browsers say where a navigation came from; a link on another site must not log anyone in or out.
    return request.headers.get("sec-fetch-site", "").lower() in {"cross-site", "same-site"}


def _set_session_cookie(response: Response, request: Request, token: str, auth: AuthService) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(auth.policy.session_lifetime.total_seconds()), path="/",
        httponly=True, samesite="strict", secure=_https(request),
    )


def _clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_https(request))


@_route
def start_session(request: Request) -> Response:
    response = RedirectResponse("/", status_code=303)
    token = request.query_params.get("t", "")
    if not token or _cross_site(request):
        return response
    auth = _auth()
    try:
        login = auth.redeem_handoff(token)
    except InvalidCredentials:
        return response  # expired or used: back to the login page, no cookie
    _set_session_cookie(response, request, login.token, auth)
    return response


# Why a person was signed out, for the sign-in page to say (``/?farewell=erased``). A comment, not a
# docstring: this module is also the Streamlit script, which would print a bare string.
FAREWELLS = frozenset({"erased"})


@_route
def end_session(request: Request) -> Response:
    farewell = request.query_params.get("farewell")
    response = RedirectResponse(f"/?farewell={farewell}" if farewell in FAREWELLS else "/", status_code=303)
    if _cross_site(request):
        return response
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        _auth().logout(token, ip=_client_address(request))
    _clear_session_cookie(response, request)
    return response


@_route
def session_me(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return JSONResponse({"error": "Not signed in."}, status_code=401)
    auth = _auth()
    try:
        verified = auth.verify(token)
    except InvalidCredentials as exc:
        response = JSONResponse({"error": exc.message}, status_code=401)
        _clear_session_cookie(response, request)  # a dead cookie is of no use to anyone
        return response
    user, session = verified.user, verified.session
    response = JSONResponse({
        "user": {"id": user.id, "username": user.username, "email": user.email, "role": user.role},
        "session": {"created_at": session.created_at.isoformat(), "expires_at": session.expires_at.isoformat()},
    })
    if verified.renewed_token:
        _set_session_cookie(response, request, verified.renewed_token, auth)
    return response


@_route
def metrics(request: Request) -> Response:
    from pages.common import get_runtime

    from core.metrics import METRICS

    return Response(get_runtime().metrics_text(), media_type=METRICS.content_type)


ROUTES = [
    Route("/api/session/start", start_session, methods=["GET"]),
    Route("/api/session/end", end_session, methods=["GET", "POST"]),
    Route("/api/session/me", session_me, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

app = st.App(__file__, routes=ROUTES)

if st.runtime.exists():
    st.set_page_config(page_title="Optimus", page_icon=":material/neurology:", layout="wide")

    try:
        from pages.common import degraded_banner, get_runtime

        runtime = get_runtime()
    except AppError as exc:  # bad settings or unreachable storage: say what to fix, no traceback
        st.title("Optimus cannot start")
        st.error(exc.message, icon=":material/error:")
        st.stop()

    degraded_banner(runtime)
    from pages.auth_session import current_user, send_to_end_route

    user = current_user(runtime)
    if user is None:
        # Signed out, the only page that exists is the sign-in page: every other URL lands here.
        page = st.navigation([st.Page("pages/login.py", title="Sign in", icon=":material/login:", default=True)],
                             position="hidden")
    else:
        sections = {
            "Optimus": [
                st.Page("pages/chat.py", title="Chat", icon=":material/chat:", default=True),
                st.Page("pages/memories.py", title="Memories", icon=":material/neurology:"),
                st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
            ],
        }
        if user.role == "admin":  # pages a non-admin cannot even address
            sections["Admin"] = [
                st.Page("pages/admin_analytics.py", title="Analytics", icon=":material/monitoring:"),
                st.Page("pages/admin_tools.py", title="Admin tools", icon=":material/admin_panel_settings:"),
                st.Page("pages/home.py", title="Status", icon=":material/health_and_safety:"),
            ]
        page = st.navigation(sections)
        with st.sidebar:
            st.caption(f"Signed in as **{user.username}**" + (" · admin" if user.role == "admin" else ""))
            if st.button("Sign out", icon=":material/logout:", width="stretch", key="sign_out"):
                send_to_end_route()
                st.stop()
    page.run()
