"""The operator's way in: create the first admin, reset a password, lift a lock.

There is no default account and no default password. The first admin comes from either

* the CLI (the password is read from a prompt, or from stdin when piped; never from argv, which
  other local users can read in the process list)::

      python -m core.admin create-admin --username alice [--email alice@example.org]
      printf '%s\\n' "$PASSWORD" | python -m core.admin create-admin --username alice
      python -m core.admin reset-password --username alice
      python -m core.admin unlock --username alice

* or ``OPTIMUS_ADMIN_USERNAME`` + ``OPTIMUS_ADMIN_PASSWORD`` (+ ``OPTIMUS_ADMIN_EMAIL``), read at
  start by :func:`ensure_admin_from_settings`: while no admin exists, that account is created.
  Once one exists the settings are ignored (so a later password change is not undone at restart);
  they can be removed.

Both apply the same password rules as registration.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import TYPE_CHECKING, TextIO

from core.errors import AppError, ConfigError, ValidationError

if TYPE_CHECKING:
    from core.auth import AuthService
    from core.runtime import Runtime
    from core.users import User

log = logging.getLogger(__name__)


def ensure_admin_from_settings(runtime: Runtime) -> User | None:
    """Create the ``OPTIMUS_ADMIN_*`` admin if the settings name one and no admin exists yet.

    Returns the user created, or None. A weak password or a half-set pair is a :class:`ConfigError`
    naming the variable to fix.
    """
    settings = runtime.settings
    username = (settings.admin_username or "").strip()
    password = settings.admin_password.get_secret_value() if settings.admin_password is not None else ""
    if not username and not password:
        return None
    if not username or not password:
        missing = "OPTIMUS_ADMIN_PASSWORD" if username else "OPTIMUS_ADMIN_USERNAME"
        raise ConfigError(f"{missing} is not set: set both OPTIMUS_ADMIN_USERNAME and OPTIMUS_ADMIN_PASSWORD "
                          "to create the first admin at start, or neither (and use `python -m core.admin`).")
    if runtime.users.list_users(role="admin", limit=1):
        existing = runtime.users.find_by_username(username)
        if existing is None or existing.role != "admin":
            log.warning("OPTIMUS_ADMIN_USERNAME=%s ignored: an admin already exists", username)
        return None
    try:
        user = runtime.auth.create_admin(username, password, email=settings.admin_email, via="settings")
    except ValidationError as exc:
        name = {"password": "OPTIMUS_ADMIN_PASSWORD", "email": "OPTIMUS_ADMIN_EMAIL"}.get(
            exc.field or "", "OPTIMUS_ADMIN_USERNAME")
        raise ConfigError(f"{name}: {exc.message}") from None
    log.info("created the first admin %r from OPTIMUS_ADMIN_USERNAME", user.username)
    return user


def read_password(stdin: TextIO, *, confirm: bool = True) -> str:
    """A password from an interactive prompt (typed twice) or the first line of piped stdin."""
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat the password: ") != first:
            raise ValidationError("The two passwords differ.", field="password")
        return first
    return stdin.readline().rstrip("\r\n")


def _auth_service(storage, settings) -> AuthService:
    from core.auth import AuthPolicy, AuthService
    from core.config import resolve_jwt_secret

    return AuthService(storage.engine, secret=resolve_jwt_secret(settings), policy=AuthPolicy.from_settings(settings))


def main(argv: list[str] | None = None, *, stdin: TextIO | None = None) -> int:
    from core.config import get_settings
    from core.storage import open_storage

    parser = argparse.ArgumentParser(prog="python -m core.admin", description="Operator tasks for Optimus accounts.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-admin", help="create an admin account (password from prompt or stdin)")
    create.add_argument("--username", required=True)
    create.add_argument("--email")
    reset = commands.add_parser("reset-password", help="set a new password (ends the user's sessions)")
    reset.add_argument("--username", required=True)
    unlock = commands.add_parser("unlock", help="lift an admin's lock and forgive failed logins")
    unlock.add_argument("--username", required=True)
    args = parser.parse_args(argv)
    stdin = stdin or sys.stdin

    try:
        settings = get_settings()
        if settings.storage == "ephemeral":
            print("OPTIMUS_STORAGE=ephemeral keeps nothing between runs; there is no account to manage.",
                  file=sys.stderr)
            return 2
        storage = open_storage(settings)
    except AppError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    try:
        auth = _auth_service(storage, settings)
        if args.command == "create-admin":
            user = auth.create_admin(args.username, read_password(stdin), email=args.email)
            print(f"Created admin {user.username}.")
            return 0
        user = auth.users.find_by_username(args.username)
        if user is None:
            print(f"No user named {args.username!r}.", file=sys.stderr)
            return 1
        if args.command == "reset-password":
            ended = auth.set_password(None, user.id, read_password(stdin))
            print(f"New password set for {user.username}; {ended} session(s) ended.")
        else:
            auth.unlock_user(None, user.id)
            print(f"Unlocked {user.username}.")
        return 0
    except AppError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    finally:
        storage.close()


if __name__ == "__main__":
    sys.exit(main())
