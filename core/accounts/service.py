"""The accounts facade: one :class:`AuthService` that composes the parts of this package.

Each part owns one concern and gets the engine, clock, policy and audit log it needs handed in;
the facade only builds them once and forwards. Add behaviour to the part, then forward it here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import SecretStr
from sqlalchemy import Engine

from core.accounts.admin_ops import AdminOps
from core.accounts.credentials import Credentials
from core.accounts.handoff import Handoffs
from core.accounts.login import PasswordLogin
from core.accounts.oidc import OidcAccounts
from core.accounts.passwords import PasswordHasher
from core.accounts.policy import AuthPolicy
from core.accounts.sessions import AuthSession, Login, Sessions, Verified
from core.accounts.throttle import Captcha, LoginThrottle
from core.accounts.tokens import TokenCodec, secret_key
from core.audit import AuditLog
from core.users import Role, User, UserStore


class AuthService:
    """Registration, login, sessions and admin operations. Thread-safe; every rule is checked here."""

    def __init__(
        self,
        engine: Engine,
        *,
        secret: SecretStr | str,
        users: UserStore | None = None,
        audit: AuditLog | None = None,
        policy: AuthPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        key = secret_key(secret)
        clock = clock or (lambda: datetime.now(UTC))
        self.users = users or UserStore(engine, clock=clock)
        self.audit = audit or AuditLog(engine, clock=clock)
        self.policy = policy = policy or AuthPolicy()
        self.hasher = PasswordHasher(policy.bcrypt_rounds)
        self.tokens = TokenCodec(key, policy)
        self.throttle = LoginThrottle(engine, key=key, audit=self.audit, policy=policy, clock=clock)
        self.session_store = Sessions(engine, tokens=self.tokens, audit=self.audit, policy=policy, clock=clock)
        self.credentials = Credentials(engine, users=self.users, hasher=self.hasher, throttle=self.throttle,
                                       audit=self.audit, clock=clock)
        self.password_login = PasswordLogin(engine, hasher=self.hasher, throttle=self.throttle,
                                            sessions=self.session_store, audit=self.audit, policy=policy,
                                            clock=clock)
        self.handoffs = Handoffs(engine, tokens=self.tokens, policy=policy, clock=clock)
        self.admin = AdminOps(engine, audit=self.audit, clock=clock)
        self.oidc = OidcAccounts(engine, users=self.users, audit=self.audit, policy=policy, clock=clock)

    # --- passwords and accounts (credentials.py) -----------------------------------------------
    def hash_password(self, password: str) -> str:
        return self.hasher.hash(password)

    def register(self, username: str, password: str, *, email: str | None = None, ip: str | None = None) -> User:
        """Create an account with role ``user``. A weak password raises :class:`ValidationError` saying why."""
        return self.credentials.register(username, password, email=email, ip=ip)

    def create_admin(self, username: str, password: str, *, email: str | None = None, via: str = "cli") -> User:
        """The operator creates an admin (``python -m core create-admin`` or ``OPTIMUS_ADMIN_*``)."""
        return self.credentials.create_admin(username, password, email=email, via=via)

    def change_password(self, user_id: str, old_password: str, new_password: str, *,
                        current_jti: str | None = None, ip: str | None = None) -> int:
        """Set a new password after checking the old one; end every other session. Returns how many ended."""
        return self.credentials.change_password(user_id, old_password, new_password, current_jti=current_jti, ip=ip)

    def set_password(self, actor: User | None, user_id: str, new_password: str, *, ip: str | None = None) -> int:
        """An admin (or, with ``actor=None``, the operator's CLI) sets a password; ends all of its sessions."""
        return self.credentials.set_password(actor, user_id, new_password, ip=ip)

    # --- login and brute-force defence (login.py, throttle.py) ---------------------------------
    def login(self, username: str, password: str, *, ip: str | None = None, user_agent: str | None = None,
              captcha_id: str | None = None, captcha_answer: str | int | None = None) -> Login:
        """Check a username and password and open a session (see :meth:`PasswordLogin.login`)."""
        return self.password_login.login(username, password, ip=ip, user_agent=user_agent,
                                         captcha_id=captcha_id, captcha_answer=captcha_answer)

    def captcha_needed(self, username: str) -> bool:
        """Whether the next login for ``username`` must answer a CAPTCHA (for showing it up front)."""
        return self.throttle.captcha_needed(username)

    def new_captcha(self) -> Captcha:
        """A fresh arithmetic question; its answer is checked once, within five minutes."""
        return self.throttle.new_captcha()

    # --- sessions (sessions.py) ----------------------------------------------------------------
    def open_session(self, user: User, *, ip: str | None = None, user_agent: str | None = None,
                     method: str = "oidc") -> Login:
        """A session for someone already authenticated elsewhere (``st.login``/OIDC)."""
        return self.session_store.open_session(user, ip=ip, user_agent=user_agent, method=method)

    def verify(self, token: str, *, renew: bool = True) -> Verified:
        """The user and session behind ``token``, or :class:`InvalidCredentials` (see :meth:`Sessions.verify`)."""
        return self.session_store.verify(token, renew=renew)

    def logout(self, token: str, *, ip: str | None = None) -> bool:
        """End the session behind ``token``. False (and nothing recorded) if it was not a live session."""
        return self.session_store.logout(token, ip=ip)

    def logout_everywhere(self, user_id: str, *, ip: str | None = None) -> int:
        """End every session of ``user_id`` (the caller's own, from the account page). Returns how many."""
        return self.session_store.logout_everywhere(user_id, ip=ip)

    def sessions(self, user_id: str, *, include_inactive: bool = False) -> list[AuthSession]:
        """A user's sessions, newest first (for "where am I signed in")."""
        return self.session_store.for_user(user_id, include_inactive=include_inactive)

    def revoke_session(self, actor: User, jti: str, *, ip: str | None = None) -> None:
        """End one session: the owner may end their own, an admin anyone's. Unknown → :class:`NotFound`."""
        self.session_store.revoke_session(actor, jti, ip=ip)

    def revoke_all_sessions(self, actor: User, user_id: str, *, ip: str | None = None) -> int:
        """Admin: end every session of ``user_id``."""
        return self.session_store.revoke_all_sessions(actor, user_id, ip=ip)

    # --- browser hand-off (handoff.py) ---------------------------------------------------------
    def mint_handoff(self, session: AuthSession, *, browser: str) -> str:
        """A 60-second, single-use token the cookie route trades for this session's cookie in ``browser``."""
        return self.handoffs.mint(session, browser=browser)

    def redeem_handoff(self, token: str, *, browser: str | None) -> Login:
        """Use up a hand-off token in the browser it was minted for (see :meth:`Handoffs.redeem`)."""
        return self.handoffs.redeem(token, browser=browser)

    # --- admin operations (admin_ops.py) -------------------------------------------------------
    def set_role(self, actor: User, user_id: str, role: Role, *, ip: str | None = None) -> User:
        """Admin: change a user's role. The last unlocked admin cannot be demoted."""
        return self.admin.set_role(actor, user_id, role, ip=ip)

    def lock_user(self, actor: User, user_id: str, *, ip: str | None = None) -> User:
        """Admin: lock an account (its sessions end; logins are refused until unlocked)."""
        return self.admin.lock_user(actor, user_id, ip=ip)

    def unlock_user(self, actor: User | None, user_id: str, *, ip: str | None = None) -> User:
        """Admin (or the operator's CLI, ``actor=None``): lift an admin's lock and clear failed logins."""
        return self.admin.unlock_user(actor, user_id, ip=ip)

    def delete_user(self, actor: User, user_id: str, *, ip: str | None = None) -> None:
        """Delete an account row (sessions, conversations… cascade). Admins, or the user themself."""
        self.admin.delete_user(actor, user_id, ip=ip)

    def check_delete(self, actor: User, user_id: str) -> None:
        """Raise what :meth:`delete_user` would raise, changing nothing."""
        self.admin.check_delete(actor, user_id)

    # --- OIDC (oidc.py) ------------------------------------------------------------------------
    def user_for_oidc(self, issuer: str, subject: str, *, email: str | None = None,
                      preferred_username: str | None = None, name: str | None = None,
                      ip: str | None = None) -> User:
        """The local user for an OIDC identity, created on first sight (see :meth:`OidcAccounts.user_for_oidc`)."""
        return self.oidc.user_for_oidc(issuer, subject, email=email, preferred_username=preferred_username,
                                       name=name, ip=ip)
