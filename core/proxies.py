"""Who is on the other end of a connection, when reverse proxies stand in between.

A reverse proxy connects to Optimus itself and names the real client in ``X-Forwarded-For``. That
header is only as trustworthy as whoever sent it: a client talking to Optimus directly can write
anything in it. So it is believed only from the proxies listed in ``OPTIMUS_TRUSTED_PROXIES``
(addresses or networks), and read from the right: each trusted proxy appends the address it saw,
so the first address from the right that is not a trusted proxy is the client.

Per-address limits (failed sign-ins, API requests) key on this address. With no trusted proxies,
everything behind a proxy on the same host is one address, which is safe but coarse; list the
proxy to get per-client limits. An address that cannot be known at all is one shared address
too — it never escapes a limit.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[Network]:
    """``["127.0.0.1", "10.0.0.0/8", "::1"]`` as networks; raises ``ValueError`` naming a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)") from None
    return networks


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.7:51234
        text = text.split(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str | None:
    """The client's address: ``peer`` (the connection's), or, when ``peer`` is a trusted proxy, the
    rightmost address in ``forwarded_for`` that is not a trusted proxy. None if it cannot be known."""
    current = _address(peer)
    if current is None:
        return None
    if forwarded_for and any(current in net for net in trusted):
        for hop in reversed(forwarded_for.split(",")):
            hop_address = _address(hop)
            if hop_address is None:
                break  # a malformed entry: do not believe anything left of it
            current = hop_address
            if not any(current in net for net in trusted):
                break
    return str(current)
