"""Access tokens: HS256 JWTs (``sub``, ``role``, ``jti``, ``iat``, ``exp``, ``iss``).

Decoding rejects anything but HS256, a bad or non-canonical signature, missing or mistyped claims,
an expired token and one issued in the future. Whether the session behind a token is still alive
is :mod:`core.accounts.sessions`' business.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any

import jwt
from pydantic import SecretStr

from core.accounts.policy import AuthPolicy
from core.errors import InvalidCredentials
from core.users import User

ALGORITHM = "HS256"
ISSUER = "optimus"
MIN_SECRET_BYTES = 32
MAX_TOKEN_CHARS = 4096
SIGN_IN_AGAIN = "Please sign in again."
_REQUIRED_CLAIMS = ("sub", "role", "jti", "iat", "exp", "iss")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def secret_key(secret: SecretStr | str) -> str:
    """The signing key behind ``secret``; ValueError if it is too short to be one."""
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if len(key.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
    return key


def _canonical_b64url(segment: str) -> bool:
    """True if ``segment`` is the one canonical unpadded base64url spelling of its bytes.

    Base64 lets the last character of a segment vary in its unused bits without changing the
    bytes; such a twin must not pass as the same token. PyJWT 2.15 refuses them too, older
    versions did not, so we check it ourselves: *any* change to a token makes a rejected token.
    """
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        return False
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == segment


class TokenCodec:
    """Signs and checks our access tokens with one key; lifetimes come from the policy."""

    def __init__(self, key: str, policy: AuthPolicy) -> None:
        self._key = key
        self._policy = policy

    def encode(self, user: User, jti: str, now: datetime) -> str:
        """A token naming ``user`` and their session ``jti``, valid for one session lifetime from ``now``."""
        issued = int(now.timestamp())
        claims = {"iss": ISSUER, "sub": user.id, "role": user.role, "jti": jti, "iat": issued,
                  "exp": issued + int(self._policy.session_lifetime.total_seconds())}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def decode(self, token: str, now: datetime) -> dict[str, Any]:
        """Claims of a well-formed, correctly signed, unexpired token of ours; else InvalidCredentials."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidCredentials(SIGN_IN_AGAIN)
        segments = token.split(".")
        if len(segments) != 3 or not all(_canonical_b64url(s) for s in segments):
            raise InvalidCredentials(SIGN_IN_AGAIN)
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:
                raise InvalidCredentials(SIGN_IN_AGAIN)
            # exp/iat are checked below against our clock (PyJWT would use the wall clock).
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": list(_REQUIRED_CLAIMS), "verify_exp": False,
                                         "verify_iat": False, "verify_nbf": False})
        except jwt.PyJWTError:
            raise InvalidCredentials(SIGN_IN_AGAIN) from None
        exp, iat = claims.get("exp"), claims.get("iat")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat)) or not all(
                isinstance(claims.get(k), str) for k in ("sub", "role", "jti")):
            raise InvalidCredentials(SIGN_IN_AGAIN)
        ts = now.timestamp()
        if exp <= ts:
            raise InvalidCredentials("Your session has expired. Please sign in again.")
        if iat > ts + 60:  # issued in the future: not by this clock
            raise InvalidCredentials(SIGN_IN_AGAIN)
        return claims
