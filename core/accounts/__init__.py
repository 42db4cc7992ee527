"""Accounts, sessions and who may do what.

One concern per module; :class:`AuthService` (``service.py``) composes them and is what the
composition root (:mod:`core.runtime`) builds and callers use.

* ``policy.py``: :class:`AuthPolicy`, the knobs, read from ``OPTIMUS_*``.
* ``passwords.py``: the strength rule (12+ characters, zxcvbn score >= 3) and bcrypt over a
  SHA-256 pre-hash.
* ``tokens.py``: HS256 JWTs (``sub``, ``role``, ``jti``, ``iat``, ``exp``, ``iss``), nothing else.
* ``sessions.py``: the ``auth_sessions`` rows behind tokens: open (capped at ``max_sessions``),
  verify (with sliding renewal), list, revoke.
* ``throttle.py``: failed-login counts per username and per address, lockouts, the CAPTCHA.
* ``login.py``: password login (same answer and time for unknown user, wrong password and
  admin-locked account).
* ``credentials.py``: registration, the operator's admins, password changes.
* ``handoff.py``: the browser-bound, single-use hand-off from a Streamlit login to the HttpOnly
  cookie.
* ``admin_ops.py``: roles, locks and deletion; the last unlocked admin stays.
* ``oidc.py``: the local user behind an (issuer, subject) OIDC identity.
* ``bootstrap.py``: the first admin from ``OPTIMUS_ADMIN_*``.

Every action writes exactly one :mod:`core.audit` event.
"""

from core.accounts.bootstrap import ensure_admin_from_settings
from core.accounts.handoff import BROWSER_COOKIE, new_browser_id
from core.accounts.passwords import check_password_strength, hash_password
from core.accounts.policy import AuthPolicy
from core.accounts.service import AuthService
from core.accounts.sessions import SESSION_COOKIE, AuthSession, Login, Verified
from core.accounts.throttle import Captcha

__all__ = [
    "BROWSER_COOKIE", "SESSION_COOKIE", "AuthPolicy", "AuthService", "AuthSession", "Captcha", "Login", "Verified",
    "check_password_strength", "ensure_admin_from_settings", "hash_password", "new_browser_id",
]
