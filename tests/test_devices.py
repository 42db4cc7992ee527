"""Readable device names (core.devices) and client addresses behind trusted proxies (core.proxies)."""

import pytest

from core.config import load_settings
from core.devices import describe_user_agent
from core.errors import ConfigError
from core.proxies import client_address, parse_networks

CHROME_LINUX = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/142.0.0.0 Safari/537.36")


@pytest.mark.parametrize(("agent", "expected"), [
    (CHROME_LINUX, "Chrome 142 on Linux"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Mobile/15E148 Safari/604.1", "Mobile Safari 17 on iOS 17 (iPhone)"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox 133 on Windows 10"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
     "Safari/605.1.15", "Safari 17 on macOS 14"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/142.0.7444.59 "
     "Safari/537.36", "Chrome (headless) 142 on Linux"),
    ("python-httpx/0.28.1", "python-httpx 0.28"),
    ("", "Unknown device"),
    (None, "Unknown device"),
    ("\x00" * 5000, "Unknown device"),
])
def test_user_agents_read_as_browser_and_system(agent, expected):
    assert describe_user_agent(agent) == expected


PROXIES = parse_networks(["127.0.0.1", "10.0.0.0/8", "::1"])


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("198.51.100.2", None, "198.51.100.2"),
    ("127.0.0.1", "203.0.113.7", "203.0.113.7"),  # our proxy says who it forwards for
    ("198.51.100.2", "203.0.113.7", "198.51.100.2"),  # anyone else may not claim an address
    ("127.0.0.1", "6.6.6.6, 203.0.113.7, 10.0.0.5", "203.0.113.7"),  # the nearest untrusted hop, not a forged one
    ("127.0.0.1", "not-an-address", "127.0.0.1"),
    ("127.0.0.1", "10.0.0.5, 10.0.0.6", "10.0.0.5"),
    ("::ffff:127.0.0.1", "2001:db8::7", "2001:db8::7"),
    ("::1", None, "::1"),
    (None, "203.0.113.7", None),
    ("garbage", None, None),
])
def test_client_address_believes_only_trusted_proxies(peer, forwarded, expected):
    assert client_address(peer, forwarded, PROXIES) == expected


def test_no_trusted_proxy_means_forwarding_headers_are_ignored():
    assert client_address("127.0.0.1", "203.0.113.7", []) == "127.0.0.1"


def test_a_bad_trusted_proxy_setting_says_which_entry(monkeypatch):
    monkeypatch.setenv("OPTIMUS_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/33")
    with pytest.raises(ConfigError, match="10.0.0.0/33"):
        load_settings()
    monkeypatch.setenv("OPTIMUS_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")
    assert load_settings().trusted_proxies == ["127.0.0.1", "10.0.0.0/8"]
