"""Passwords: the strength rule and the bcrypt hash.

At least 12 characters and a zxcvbn score >= 3 (the message says why a password is weak); stored
as bcrypt (cost 12 by default) over a SHA-256 pre-hash, so passphrases longer than bcrypt's 72
bytes count in full.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading

import bcrypt

from core.errors import ValidationError

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 128
MIN_PASSWORD_SCORE = 3
_zxcvbn_lock = threading.Lock()  # zxcvbn keeps the user inputs in a module-global dictionary


def _prehash(password: str) -> bytes:
    # bcrypt reads at most 72 bytes (bcrypt 5 refuses more); the base64 of a SHA-256 is 44 bytes
    # and has no NUL, so every character of a long passphrase counts.
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, *, rounds: int = 12) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def check_hash(password: str, stored: str) -> bool:
    """Whether ``password`` matches the stored hash; a malformed hash never matches."""
    try:
        return bcrypt.checkpw(_prehash(password), stored.encode("ascii"))
    except ValueError:
        return False


def hash_cost(stored: str) -> int | None:
    """The bcrypt cost a stored hash was made with, or None if it does not say."""
    parts = stored.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None


def check_password_strength(password: str, *, user_inputs: tuple[str, ...] = ()) -> None:
    """Raise :class:`ValidationError` saying why ``password`` is too weak; return if it is fine.

    Rules: 12–128 characters and a zxcvbn score of at least 3 out of 4, with the username and
    email counted as guessable.
    """
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise ValidationError(f"Use at least {MIN_PASSWORD_CHARS} characters for your password.", field="password")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValidationError(f"Use at most {MAX_PASSWORD_CHARS} characters for your password.", field="password")
    import zxcvbn

    inputs = [i for i in user_inputs if i] + ["optimus"]
    with _zxcvbn_lock:
        # zxcvbn caps its input at 72 characters; a strong 72-character prefix is strong enough.
        result = zxcvbn.zxcvbn(password[:72], user_inputs=inputs)
    if result["score"] < MIN_PASSWORD_SCORE:
        feedback = result.get("feedback") or {}
        reasons = [feedback.get("warning") or ""] + list(feedback.get("suggestions") or [])
        why = " ".join(r.strip() for r in reasons if r and r.strip())
        raise ValidationError(
            "This password is too easy to guess." + (f" {why}" if why else " Add more uncommon words."),
            field="password", detail={"score": result["score"]},
        )


class PasswordHasher:
    """Hashes at the policy's cost, and keeps the dummy hash that unknown users are checked against."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()
        # Hash the dummy now, off the request path: the first unknown-user login must not be the slow one.
        threading.Thread(target=self.dummy, name="auth-dummy-hash", daemon=True).start()

    def hash(self, password: str) -> str:
        return hash_password(password, rounds=self.rounds)

    def dummy(self) -> str:
        """A hash of a random password at our cost, checked for unknown users so they take as long."""
        if self._dummy_hash is None:
            with self._dummy_lock:
                if self._dummy_hash is None:
                    self._dummy_hash = self.hash(secrets.token_urlsafe(32))
        return self._dummy_hash
