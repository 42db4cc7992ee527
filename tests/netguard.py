"""Fail any test that tries to reach a non-loopback address (or resolve a public name).

Installed once from ``conftest.py``. Blocked attempts raise :class:`NetworkBlocked` *and* are
recorded, so a library that swallows the exception still fails the test.
"""

from __future__ import annotations

import ipaddress
import socket

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}
violations: list[str] = []


class NetworkBlocked(RuntimeError):
    """A test tried to leave the machine."""


def is_local(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").split("%", 1)[0]
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _blocked(what: str) -> NetworkBlocked:
    violations.append(what)
    return NetworkBlocked(f"tests may only use loopback; blocked {what}")


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not is_local(address[0]):
        raise _blocked(f"connect to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not is_local(address[0]):
        raise _blocked(f"connect to {address!r}")
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not is_local(host):
        try:
            ipaddress.ip_address(str(host.decode() if isinstance(host, bytes) else host).strip("[]"))
        except ValueError:
            raise _blocked(f"name lookup of {host!r}") from None
    return _real_getaddrinfo(host, *args, **kwargs)


def install() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo
