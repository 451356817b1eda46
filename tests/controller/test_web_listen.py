"""The web page's listening sockets: a start-up shortcut that must not change them.

controller.web.server.listen skips the resolver (its thread and the "idna" codec it
loads) for an address written out, such as the default 127.0.0.1: the sockets must be
the ones the resolver would have given, and a name must still be looked up.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from controller.web.server import _is_address, listen


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", True),
        ("0.0.0.0", True),
        ("::1", True),
        ("localhost", False),
        ("[::1]", False),  # not an address as getaddrinfo reads it: looked up, and refused
        ("127.000.000.001", False),  # leading zeros: left to the resolver, as before
        ("١٢٧.0.0.1", False),  # digits of another script are not an address
        ("", False),
    ],
)
def test_is_address(host: str, address: bool) -> None:
    assert _is_address(host) is address


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_listen_binds_what_the_resolver_names(host: str) -> None:
    expected = await asyncio.get_running_loop().getaddrinfo(
        host, 0, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets = await listen(host, 0)
    try:
        bound = [(s.family, s.type, s.getsockname()[0]) for s in sockets]
        # Each address once (listen drops repeats), in the resolver's order.
        wanted = list(dict.fromkeys((f, k, a[0]) for f, k, _, _, a in expected))
        assert bound == wanted
        assert all(s.getsockname()[1] > 0 for s in sockets)
        assert not any(s.getblocking() for s in sockets)
    finally:
        for sock in sockets:
            sock.close()
