"""``RemoteMemory`` and ``AsyncRemoteMemory``: the exchanges of :mod:`core.client.exchanges` run
on a blocking ``httpx.Client`` and on an ``httpx.AsyncClient``.

Each public method is made from its exchange by :func:`blocking` or :func:`awaitable`, which keep
the exchange's parameters and take the docstring from :class:`MemoryInterface`: a method is
written and documented once, and both clients get it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from core.client import wire
from core.client.exchanges import MemoryExchanges
from core.client.wire import Flow
from core.memory.interface import MEMORY_METHODS, MemoryInterface

P = ParamSpec("P")
T = TypeVar("T")
Exchange = Callable[Concatenate[MemoryExchanges, P], Flow[T]]


def _signature(exchange: Callable[..., Any]) -> inspect.Signature:
    """The exchange's signature, returning what its flow returns (``Flow[X]`` → ``X``)."""
    signature = inspect.signature(exchange)
    returns = signature.return_annotation
    if isinstance(returns, str) and returns.startswith("Flow[") and returns.endswith("]"):
        signature = signature.replace(return_annotation=returns[len("Flow["):-1])
    return signature


def _describe(method: Callable[..., Any], exchange: Callable[..., Any]) -> None:
    contract = getattr(MemoryInterface, exchange.__name__, None)
    method.__doc__ = exchange.__doc__ or (contract.__doc__ if contract else None)
    method.__signature__ = _signature(exchange)  # type: ignore[attr-defined]


def blocking(exchange: Exchange[P, T]) -> Callable[Concatenate[RemoteMemory, P], T]:
    """A method of :class:`RemoteMemory` that runs ``exchange`` and returns its result."""

    @functools.wraps(exchange)
    def method(self: RemoteMemory, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(exchange(self._exchanges, *args, **kwargs))

    _describe(method, exchange)
    return method


def awaitable(exchange: Exchange[P, T]) -> Callable[Concatenate[AsyncRemoteMemory, P], Awaitable[T]]:
    """A coroutine method of :class:`AsyncRemoteMemory` that runs ``exchange``."""

    @functools.wraps(exchange)
    async def method(self: AsyncRemoteMemory, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(exchange(self._exchanges, *args, **kwargs))

    _describe(method, exchange)
    return method


class _Remote:
    """What both clients share: the base URL, the key's header and the exchanges' state."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Token {api_key}"}
        self._exchanges = MemoryExchanges()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in (*MEMORY_METHODS, "ping"):
            getattr(cls, name).__qualname__ = f"{cls.__qualname__}.{name}"


class RemoteMemory(_Remote):
    """:class:`MemoryInterface` over the REST API (blocking httpx). Thread-safe; close it when done.

    The key is checked by the first call (``owner_id`` or any method), not by the constructor.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, api_key)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers=self._headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def owner_id(self) -> str:
        """The account this key acts as (asked once, from ``/v1/ping/``)."""
        return self._run(self._exchanges.owner())

    def _run(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                try:
                    response = self._http.request(call.method, call.path, json=call.json, params=call.params)
                except httpx.TransportError as exc:
                    call = flow.throw(wire.unreachable(self.base_url, exc))
                else:
                    call = flow.send(response)
        except StopIteration as done:
            return done.value

    ping = blocking(MemoryExchanges.ping)
    add = blocking(MemoryExchanges.add)
    add_many = blocking(MemoryExchanges.add_many)
    get = blocking(MemoryExchanges.get)
    get_all = blocking(MemoryExchanges.get_all)
    update = blocking(MemoryExchanges.update)
    delete = blocking(MemoryExchanges.delete)
    delete_all = blocking(MemoryExchanges.delete_all)
    history = blocking(MemoryExchanges.history)
    revert = blocking(MemoryExchanges.revert)
    search = blocking(MemoryExchanges.search)
    temporal_search = blocking(MemoryExchanges.temporal_search)
    by_tags = blocking(MemoryExchanges.by_tags)
    by_people = blocking(MemoryExchanges.by_people)
    stats = blocking(MemoryExchanges.stats)


class AsyncRemoteMemory(_Remote):
    """:class:`MemoryInterface` over the REST API with every method a coroutine (``httpx.AsyncClient``).

    Use it as ``async with AsyncRemoteMemory(url, key) as memory:``: entering checks the key
    (``InvalidCredentials`` if it is refused) and learns :attr:`owner_id`; leaving closes the
    connections. Tasks of one event loop may share it.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, api_key)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport,
                                       headers=self._headers)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRemoteMemory:
        try:
            await self.ping()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def owner_id(self) -> str:
        """The account this key acts as (known once the key was checked by ``async with`` or ``ping()``)."""
        if self._exchanges.owner_id is None:
            raise RuntimeError("The key has not been checked yet: use `async with AsyncRemoteMemory(...)`.")
        return self._exchanges.owner_id

    async def _run(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                try:
                    response = await self._http.request(call.method, call.path, json=call.json, params=call.params)
                except httpx.TransportError as exc:
                    call = flow.throw(wire.unreachable(self.base_url, exc))
                else:
                    call = flow.send(response)
        except StopIteration as done:
            return done.value

    ping = awaitable(MemoryExchanges.ping)
    add = awaitable(MemoryExchanges.add)
    add_many = awaitable(MemoryExchanges.add_many)
    get = awaitable(MemoryExchanges.get)
    get_all = awaitable(MemoryExchanges.get_all)
    update = awaitable(MemoryExchanges.update)
    delete = awaitable(MemoryExchanges.delete)
    delete_all = awaitable(MemoryExchanges.delete_all)
    history = awaitable(MemoryExchanges.history)
    revert = awaitable(MemoryExchanges.revert)
    search = awaitable(MemoryExchanges.search)
    temporal_search = awaitable(MemoryExchanges.temporal_search)
    by_tags = awaitable(MemoryExchanges.by_tags)
    by_people = awaitable(MemoryExchanges.by_people)
    stats = awaitable(MemoryExchanges.stats)
