"""Which device a session is: a raw ``User-Agent`` as "Chrome 142 on Linux", with ua-parser's rules
(shipped in the ``ua-parser-builtins`` package, nothing fetched). The client's address behind
trusted reverse proxies is :mod:`core.proxies`'s."""

from __future__ import annotations

import functools
import re

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
