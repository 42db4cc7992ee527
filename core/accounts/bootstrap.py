"""The first admin, created at start from ``OPTIMUS_ADMIN_*`` when no admin exists yet."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from core.errors import ConfigError, ValidationError
from core.users import User, UserStore

if TYPE_CHECKING:
    from core.accounts.service import AuthService
    from core.config import Settings

log = logging.getLogger(__name__)


def ensure_admin_from_settings(auth: AuthService, users: UserStore, settings: Settings) -> User | None:
    """Create the ``OPTIMUS_ADMIN_*`` admin if the settings name one and no admin exists yet.

    Returns the user created, or None. A weak password or a half-set pair is a :class:`ConfigError`
    naming the variable to fix.
    """
    username = (settings.admin_username or "").strip()
    password = settings.admin_password.get_secret_value() if settings.admin_password is not None else ""
    if not username and not password:
        return None
    if not username or not password:
        missing = "OPTIMUS_ADMIN_PASSWORD" if username else "OPTIMUS_ADMIN_USERNAME"
        raise ConfigError(f"{missing} is not set: set both OPTIMUS_ADMIN_USERNAME and OPTIMUS_ADMIN_PASSWORD "
                          "to create the first admin at start, or neither (and use `python -m core create-admin`).")
    if users.list_users(role="admin", limit=1):
        existing = users.find_by_username(username)
        if existing is None or existing.role != "admin":
            log.warning("OPTIMUS_ADMIN_USERNAME=%s ignored: an admin already exists", username)
        return None
    try:
        user = auth.create_admin(username, password, email=settings.admin_email, via="settings")
    except ValidationError as exc:
        name = {"password": "OPTIMUS_ADMIN_PASSWORD", "email": "OPTIMUS_ADMIN_EMAIL"}.get(
            exc.field or "", "OPTIMUS_ADMIN_USERNAME")
        raise ConfigError(f"{name}: {exc.message}") from None
    log.info("created the first admin %r from OPTIMUS_ADMIN_USERNAME", user.username)
    return user

