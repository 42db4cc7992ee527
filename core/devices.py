"""Who is on the other end of a session: a readable device name and the client's address.

:func:`describe_user_agent` turns a raw ``User-Agent`` into "Chrome 142 on Linux" with ua-parser's
rules (shipped in the ``ua-parser-builtins`` package, nothing fetched). :func:`client_address` finds
the person's address behind reverse proxies the install trusts (``OPTIMUS_TRUSTED_PROXIES``):
``X-Forwarded-For`` is believed only when the connection itself comes from such a proxy, and then
only up to the first address that is not one, so a client cannot forge where it comes from.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_UNKNOWN = "Unknown device"
_PRODUCT = re.compile(r"(?P<name>[A-Za-z][\w.+-]{0,39})(?:/(?P<version>[\w.]{1,20}))?")


@functools.lru_cache(maxsize=512)
def describe_user_agent(user_agent: str | None) -> str:
    """ "Chrome 142 on Linux", "Mobile Safari 17 on iOS (iPhone)", "Firefox 133 on Windows 11";
    for a program rather than a browser, its name ("python-httpx 0.28"); "Unknown device" if empty."""
    if not user_agent or not user_agent.strip():
        return _UNKNOWN
    from ua_parser import parse

    result = parse(user_agent[:1000])
    browser = result.user_agent
    if browser is None or browser.family == "Other":
        product = _PRODUCT.match(user_agent.strip())  # a program: "python-httpx/0.28.1" -> "python-httpx 0.28"
        if product is None:
            return _UNKNOWN
        return f"{product['name']} {'.'.join((product['version'] or '').split('.')[:2])}".strip()
    text = browser.family.replace("HeadlessChrome", "Chrome (headless)")
    if browser.major:
        text += f" {browser.major}"
    system = result.os
    if system is not None and system.family != "Other":
        name = {"Mac OS X": "macOS"}.get(system.family, system.family)
        text += f" on {name}"
        if system.major and system.family in {"Windows", "iOS", "Android", "Mac OS X"}:
            text += f" {system.major}"
    device = result.device
    if (device is not None and device.family not in {"Other", "Spider", "Mac"}
            and device.brand not in {None, "Generic"}):
        text += f" ({device.family})"
    return text


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``["127.0.0.1", "10.0.0.0/8"]`` as networks; ValueError names the first entry that is not one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)") from None
    return tuple(out)


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def client_address(peer: str | None, forwarded_for: str | None = None, *,
                   trusted_proxies: Sequence[Network] = ()) -> str | None:
    """The client's address: ``peer`` (the connection's), or, when ``peer`` is a trusted proxy, the
    nearest address in ``X-Forwarded-For`` that is not a trusted proxy. None when unknown."""
    hop = _ip(peer)
    if hop is None:
        return None

    def trusted(ip) -> bool:
        return any(ip.version == net.version and ip in net for net in trusted_proxies)

    if not forwarded_for or not trusted(hop):
        return str(hop)
    for entry in reversed(forwarded_for.split(",")[-20:]):
        ip = _ip(entry)
        if ip is None:  # a malformed entry: nothing before it can be believed
            return str(hop)
        hop = ip
        if not trusted(ip):
            return str(ip)
    return str(hop)
