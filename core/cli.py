"""The operator's commands, one entry point: ``python -m core <command>``.

    python -m core create-admin --username alice [--email alice@example.org]
    printf '%s\\n' "$PASSWORD" | python -m core create-admin --username alice
    python -m core reset-password --username alice
    python -m core unlock --username alice
    python -m core apikey create --username alice --name laptop     # prints the key once
    python -m core apikey list --username alice
    python -m core apikey revoke --username alice --key-id KEY_ID
    python -m core backup --to /var/backups/optimus                  # app stopped (embedded mode)
    python -m core restore --from ARCHIVE --data-dir NEW_EMPTY_DIR
    python -m core reembed [--batch-size 100]                        # app stopped; after changing OPTIMUS_EMBEDDER

Passwords are read from a prompt, or from stdin when piped — never from argv, which other local
users can read in the process list. Every command opens the one :class:`~core.runtime.Runtime`
(the composition root) with the same settings as the app. In embedded mode the Qdrant Edge shard
belongs to one process: run ``backup`` while the app is stopped, or use the admin page's
*Create backup* in the running app. ``reembed`` moves the vector store to the embedder now
configured (:mod:`core.memory.reembed`); stop every app and API process first.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from core.errors import AppError, ValidationError

if TYPE_CHECKING:
    from core.runtime import Runtime


def read_password(stdin: TextIO, *, confirm: bool = True) -> str:
    """A password from an interactive prompt (typed twice) or the first line of piped stdin."""
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat the password: ") != first:
            raise ValidationError("The two passwords differ.", field="password")
        return first
    return stdin.readline().rstrip("\r\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Operator commands for Optimus.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-admin", help="create an admin account (password from prompt or stdin)")
    create.add_argument("--username", required=True)
    create.add_argument("--email")
    reset = commands.add_parser("reset-password", help="set a new password (ends the user's sessions)")
    reset.add_argument("--username", required=True)
    unlock = commands.add_parser("unlock", help="lift an admin's lock and forgive failed logins")
    unlock.add_argument("--username", required=True)
    keys = commands.add_parser("apikey", help="manage REST API keys").add_subparsers(dest="action", required=True)
    key_create = keys.add_parser("create", help="create a key and print it once")
    key_create.add_argument("--username", required=True)
    key_create.add_argument("--name", required=True, help="what the key is for")
    keys.add_parser("list", help="list a user's keys").add_argument("--username", required=True)
    key_revoke = keys.add_parser("revoke", help="revoke a key")
    key_revoke.add_argument("--username", required=True)
    key_revoke.add_argument("--key-id", required=True)
    backup = commands.add_parser("backup", help="write one consistent archive of this install")
    backup.add_argument("--to", required=True, type=Path, help="directory for the archive")
    reembed = commands.add_parser("reembed", help="re-embed every memory with the configured embedder "
                                                  "(OPTIMUS_EMBEDDER); run with the app stopped")
    reembed.add_argument("--batch-size", type=int, default=100, help="texts per embedder request (default 100)")
    restore = commands.add_parser("restore", help="unpack an archive into a new, empty data directory")
    restore.add_argument("--from", dest="archive", required=True, type=Path)
    restore.add_argument("--data-dir", required=True, type=Path)
    return parser


def main(argv: list[str] | None = None, *, stdin: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    stdin = stdin or sys.stdin
    if args.command == "restore":  # works on files only: no install is opened
        from core.backup import restore_backup

        try:
            counts = restore_backup(args.archive, args.data_dir)
        except AppError as exc:
            print(exc.message, file=sys.stderr)
            return 1
        print(f"Restored {counts.users} users, {counts.conversations} conversations, {counts.messages} messages, "
              f"{counts.memories} memories and {counts.history} history rows into {args.data_dir}. "
              f"Start Optimus with OPTIMUS_DATA_DIR={args.data_dir}.")
        return 0

    from core.config import get_settings
    from core.runtime import open_runtime

    try:
        settings = get_settings()
        if settings.storage == "ephemeral":
            print("OPTIMUS_STORAGE=ephemeral keeps nothing between runs; there is nothing to manage.",
                  file=sys.stderr)
            return 2
        # Only memory commands need the vector store, and they check it when they open it; the
        # others (an admin locked out, say) must work while the embedder is being changed.
        runtime = open_runtime(settings, check_embedder=False)
    except AppError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    try:
        return _run(runtime, args, stdin)
    except AppError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    finally:
        runtime.close()


def _run(runtime: Runtime, args: argparse.Namespace, stdin: TextIO) -> int:
    if args.command == "create-admin":
        user = runtime.auth.create_admin(args.username, read_password(stdin), email=args.email)
        print(f"Created admin {user.username}.")
        return 0
    if args.command == "backup":
        from core.backup import create_backup

        report = create_backup(runtime, args.to)
        c = report.counts
        print(f"Wrote {report.path} ({report.bytes / 2**20:.1f} MiB in {report.seconds:.1f} s): {c.users} users, "
              f"{c.conversations} conversations, {c.messages} messages, {c.memories} memories, "
              f"{c.history} history rows.")
        return 0
    if args.command == "reembed":
        from core.memory.engine import reembed_store

        report = reembed_store(runtime.settings, runtime.storage, batch_size=args.batch_size,
                               progress=lambda line: print(line, flush=True))
        print(report.summary())
        return 0
    user = runtime.users.find_by_username(args.username)
    if user is None:
        print(f"No user named {args.username!r}.", file=sys.stderr)
        return 1
    if args.command == "reset-password":
        ended = runtime.auth.set_password(None, user.id, read_password(stdin))
        print(f"New password set for {user.username}; {ended} session(s) ended.")
    elif args.command == "unlock":
        runtime.auth.unlock_user(None, user.id)
        print(f"Unlocked {user.username}.")
    elif args.action == "create":
        key, plaintext = runtime.api_keys.create(user.id, args.name, actor_id=None)
        print(plaintext)
        print(f"Key {key.id} ({key.name}) for {user.username}. Copy it now: it is not shown again.", file=sys.stderr)
    elif args.action == "list":
        for key in runtime.api_keys.for_owner(user.id):
            state = "active" if key.active else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            print(f"{key.id}  {key.prefix}…  {key.name!r}  {state}  used {key.usage_count}× (last {used})")
    else:
        key = runtime.api_keys.revoke(user.id, args.key_id, actor_id=None)
        print(f"Revoked {key.id} ({key.name}).")
    return 0
