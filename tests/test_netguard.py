import socket

import pytest

from tests import netguard


def test_non_loopback_connection_is_blocked_and_recorded():
    before = len(netguard.violations)
    with socket.socket() as s, pytest.raises(netguard.NetworkBlocked):
        s.connect(("10.255.255.1", 80))
    assert len(netguard.violations) == before + 1
    del netguard.violations[before:]  # this test provoked it on purpose


def test_public_name_lookup_is_blocked():
    before = len(netguard.violations)
    with pytest.raises(netguard.NetworkBlocked):
        socket.getaddrinfo("pypi.org", 443)
    del netguard.violations[before:]


def test_loopback_is_allowed():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
