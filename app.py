"""Optimus entrypoint: ``streamlit run app.py`` (or ``uvicorn app:app``).

This module is two things:

* the ASGI app, ``app = st.App(...)``: Streamlit plus the session-cookie routes below, ``/metrics``,
  the REST API mounted at ``/api`` and MCP at ``/mcp`` (``core.api.embedded``), all on the same
  port and over the process's one runtime. Streamlit owns ``/auth/*`` (``st.login``), so ours
  live under ``/api/session/`` (listed before the ``/api`` mount, which takes the rest);
* the Streamlit script (router and start-up gate; pages live in ``pages/``), which runs only
  inside a Streamlit runtime, i.e. for each browser session, never when the module is imported.

Cookie routes (the cookie is ``optimus_session``: HttpOnly, SameSite=Strict, Path=/, Secure
over HTTPS; it holds the access token and expires with it):

* ``GET /api/session/start?t=HANDOFF``: trade a 60-second single-use handoff token (minted after
  the password check, see ``ui/auth_session.py``) for the cookie, then 303 to ``/``. The token
  is bound to the browser that signed in: every browser gets an ``optimus_browser`` pre-session
  cookie (HttpOnly, SameSite=Strict) with its first response (:class:`BrowserCookie`), the login
  page mints the token for that value, and the route refuses it from any other browser — so a
  link minted by an attacker cannot sign a victim into the attacker's account (login CSRF);
* ``GET|POST /api/session/end``: end the cookie's session, clear the cookie, 303 to ``/`` (with
  ``?farewell=erased`` passed on, so the sign-in page can confirm an account deletion);
* ``GET /api/session/me``: the cookie's user as JSON (401 without a valid one); renews the
  cookie when the token is past half its life.
"""

import functools
import logging
from collections.abc import Callable
from http.cookies import SimpleCookie

import streamlit as st
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.accounts import BROWSER_COOKIE, SESSION_COOKIE, AuthService, new_browser_id
from core.api.embedded import embedded_services
from core.errors import AppError, InvalidCredentials
from core.logs import configure_logging, new_error_id
from core.proxies import client_address

configure_logging()
log = logging.getLogger("optimus.app")


def _auth() -> AuthService:
    # The same cached runtime the pages use: one per server process, opened by whoever comes first.
    from ui.common import get_runtime

    return get_runtime().auth


def _route(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """Private, uncached responses; a runtime that cannot open answers 503 with the reason."""

    @functools.wraps(handler)
    def wrapper(request: Request) -> Response:
        try:
            response = handler(request)
        except AppError as exc:  # bad settings or unreachable storage, as the start-up page says
            error_id = new_error_id()  # the page itself shows operators the reason; the route says no more
            log.warning("error %s: %s %s: %s", error_id, request.method, request.url.path, type(exc).__name__)
            response = JSONResponse({"error": "Optimus is not available right now.", "error_id": error_id},
                                    status_code=503)
        return _private(response)

    return wrapper


def _private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the handoff URL must not leak onwards
    return response


def _client_address(request: Request) -> str | None:
    from ui.common import get_runtime

    return client_address(request.client.host if request.client else None, request.headers.get("x-forwarded-for"),
                          get_runtime().settings.trusted_networks)


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
        login = auth.redeem_handoff(token, browser=request.cookies.get(BROWSER_COOKIE))
    except InvalidCredentials:
        return response  # expired, used or minted in another browser: back to the login page, no cookie
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
    from ui.common import get_runtime

    from core.metrics import METRICS

    return Response(get_runtime().metrics_text(), media_type=METRICS.content_type)


SERVICES = embedded_services()
ROUTES = [
    Route("/api/session/start", start_session, methods=["GET"]),
    Route("/api/session/end", end_session, methods=["GET", "POST"]),
    Route("/api/session/me", session_me, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    *SERVICES.routes,  # /api (the REST API) and /mcp: after /api/session/*
]

class BrowserCookie:
    """Sets the ``optimus_browser`` pre-session cookie on the first response a browser gets (the page,
    before any login), so the login page can bind its hand-off to this browser."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _request_cookie(scope, BROWSER_COOKIE):
            await self.app(scope, receive, send)
            return
        cookie = f"{BROWSER_COOKIE}={new_browser_id()}; Path=/; HttpOnly; SameSite=Strict"
        forwarded = _request_header(scope, b"x-forwarded-proto").split(",")[0].strip().lower()
        if scope.get("scheme") == "https" or forwarded == "https":
            cookie += "; Secure"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _request_header(scope: Scope, name: bytes) -> str:
    return next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == name), "")


def _request_cookie(scope: Scope, name: str) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(_request_header(scope, b"cookie"))
    except Exception:  # noqa: BLE001 - a malformed Cookie header is a browser without our cookie
        return None
    return jar[name].value if name in jar else None


app = st.App(__file__, routes=ROUTES, middleware=[Middleware(BrowserCookie)], lifespan=SERVICES.lifespan)

if st.runtime.exists():
    st.set_page_config(page_title="Optimus", page_icon=":material/neurology:", layout="wide")

    try:
        from ui.common import degraded_banner, get_runtime

        runtime = get_runtime()
    except AppError as exc:  # bad settings or unreachable storage: say what to fix, no traceback
        st.title("Optimus cannot start")
        st.error(exc.message, icon=":material/error:")
        st.stop()

    degraded_banner(runtime)
    from ui.auth_session import current_user, send_to_end_route

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
