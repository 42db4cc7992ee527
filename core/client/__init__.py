"""Clients of the Optimus REST API with the memory interface of the local ``MemoryService``.

:class:`RemoteMemory` (blocking) and :class:`AsyncRemoteMemory` (coroutines, ``async with``)
implement :class:`~core.memory.interface.MemoryInterface` over HTTP with an API key. The key
decides the account: every ``owner_id`` / ``scope.owner_id`` passed in must be that account's id
(``owner_id``), otherwise :class:`PermissionDenied`. HTTP failures come back as the errors the
local service raises: 404 → ``NotFound``, 422 → ``ValidationError`` (with the field), 401 →
``InvalidCredentials``, 403 → ``PermissionDenied``, 429 → ``RateLimited`` (with ``retry_after``),
5xx or no connection → ``StoreUnavailable``.

Differences from the local service, by design: the ``source`` recorded in history is always
``api``; ``add_many`` is all-or-nothing per request of up to 1000 memories (items are checked
against :class:`NewMemory` before the first request is sent).

Layout: :mod:`.wire` (JSON both ways, errors), :mod:`.exchanges` (each method once, as the HTTP
exchange it needs, without I/O), :mod:`.remote` (the blocking and the async driver).
"""

from core.client.remote import AsyncRemoteMemory, RemoteMemory
from core.client.wire import MAX_BATCH, MAX_PAGE, filters_to_json
from core.memory.interface import MemoryInterface  # its home is the memory domain; kept importable here

__all__ = ["MAX_BATCH", "MAX_PAGE", "AsyncRemoteMemory", "MemoryInterface", "RemoteMemory", "filters_to_json"]
