"""Who an MCP request acts as: an Optimus API key sent as ``Authorization: Bearer om_…``.

The MCP endpoint is an OAuth *resource server* in the SDK's terms (``AuthSettings`` plus a
``TokenVerifier``); the bearer token is one of the REST API's keys, checked against the same key
store (``core.apikeys``), so a key acts as its owner account and only as that account, whether
it is used over REST or MCP. Revoking the key, locking or deleting its owner stops both at once.

The SDK answers a missing, malformed, forged or revoked key with 401 before any tool runs; a
tool reads its caller with :func:`current_caller` (from the SDK's ``get_access_token()``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict

import anyio.to_thread
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from core.api.context import ApiContext
from core.apikeys import KeyOwner, hash_key
from core.errors import InvalidCredentials

OWNER_CLAIM = "optimus_key_owner"


class ApiKeyVerifier:
    """The SDK's ``TokenVerifier`` over Optimus API keys.

    A use is not counted here: the tool counts it once the per-account rate limit accepts the
    call, as the REST API does for a request.
    """

    def __init__(self, context: Callable[[], ApiContext]) -> None:
        self._context = context

    async def verify_token(self, token: str) -> AccessToken | None:
        ctx = self._context()
        try:
            owner = await anyio.to_thread.run_sync(functools.partial(ctx.keys.verify, token, count_use=False))
        except InvalidCredentials:
            return None  # the SDK answers 401 invalid_token, the same for every kind of bad key
        # The plaintext key is not kept: its hash is enough to tell tokens apart.
        return AccessToken(token=hash_key(token), client_id=owner.key_id, scopes=[], subject=owner.owner_id,
                           claims={OWNER_CLAIM: asdict(owner)})


def current_caller() -> KeyOwner:
    """The account the current MCP request's key acts as (inside a tool call)."""
    token = get_access_token()
    claims = (token.claims or {}) if token is not None else {}
    if OWNER_CLAIM not in claims:  # the SDK refuses unauthenticated requests before any tool runs
        raise InvalidCredentials("Send an Optimus API key as 'Authorization: Bearer om_…'.")
    return KeyOwner(**claims[OWNER_CLAIM])
