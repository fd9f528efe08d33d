"""Who owns a loopback connection's client end: the kernel's sock_diag answer read with its state, so that a
socket no process holds any more (reset, closed, TIME_WAIT: all reported as uid 0) is "unknown", never root."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from tests.conftest import has_ipv6_loopback
from xitui.core.machine import peers

linux_only = pytest.mark.skipif(not peers.supported(), reason="sockets' owners are read on Linux only")


def _answer(state: int, uid: int, inode: int, kind: int = 20) -> bytes:
    """A sock_diag answer as the kernel lays it out: nlmsghdr, then inet_diag_msg."""
    msg = struct.pack("=BBBB", socket.AF_INET, state, 0, 0) + bytes(48) + struct.pack("=IIIII", 0, 0, 0, uid, inode)
    return struct.pack("=IHHII", 16 + len(msg), kind, 0, 1, 0) + msg


def test_an_answer_is_read_with_its_state_and_inode() -> None:
    assert peers.parse_answer(_answer(peers.ESTABLISHED, 1000, 4242)) == peers.SocketEntry(1, 1000, 4242)
    assert peers.parse_answer(_answer(peers.TIME_WAIT, 0, 0)) == peers.SocketEntry(6, 0, 0)
    assert peers.parse_answer(_answer(0, 0, 0, kind=2)) is None  # NLMSG_ERROR: no such socket
    assert peers.parse_answer(_answer(peers.ESTABLISHED, 1000, 1)[:80]) is None


def test_uid_0_is_root_only_from_a_live_socket() -> None:
    entry = peers.SocketEntry
    assert peers.client_uid(entry(peers.ESTABLISHED, 1000, 77)) == 1000
    assert peers.client_uid(entry(peers.ESTABLISHED, 0, 77)) == 0  # root's, held by a process
    assert peers.client_uid(entry(peers.FIN_WAIT2, 1000, 77)) == 1000  # half-closed after sending
    assert peers.client_uid(entry(peers.TIME_WAIT, 0, 0)) is None
    assert peers.client_uid(entry(peers.FIN_WAIT2, 0, 0)) is None  # a closed client's remnant
    assert peers.client_uid(entry(peers.LISTEN, 1000, 77)) is None  # whoever listens on the client's port
    assert peers.client_uid(None) is None



#: (listen on, connect to): IPv4, IPv6, and a dual-stack listener that sees IPv4 clients as ::ffff:127.0.0.1
#: (from an IPv4 socket, and from an IPv6 one connecting to the mapped address).
KINDS = [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("::", "127.0.0.1"), ("::", "::ffff:127.0.0.1")]


@pytest.fixture(params=KINDS, ids=["ipv4", "ipv6", "dual-stack", "dual-stack-mapped"])
def connection(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket, tuple, tuple]]:
    """A connected pair: (client, accepted, the client's address as the server sees it, the server's)."""
    listen_on, connect_to = request.param
    if ":" in listen_on and not has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    listener = socket.socket(socket.AF_INET6 if ":" in listen_on else socket.AF_INET)
    if listen_on == "::":
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.bind((listen_on, 0))
    listener.listen()
    client = socket.socket(socket.AF_INET6 if ":" in connect_to else socket.AF_INET)
    client.connect((connect_to, listener.getsockname()[1]))
    accepted, address = listener.accept()
    listener.close()
    try:
        yield client, accepted, address[:2], accepted.getsockname()[:2]
    finally:
        client.close()
        accepted.close()


def _settled(address: tuple, ours: tuple, done: callable) -> peers.SocketEntry | None:  # type: ignore[valid-type]
    """The client end's entry once `done(entry)` holds (the kernel's state changes take a moment), or after 2 s."""
    deadline = time.monotonic() + 2.0
    while not done(entry := peers._lookup(address, ours)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return entry


@linux_only
def test_a_held_connection_names_its_owner_and_a_dropped_one_names_no_one(connection: tuple) -> None:
    client, accepted, address, ours = connection
    assert peers.peer_uid(address, ours) == os.getuid()
    # half-closed after sending: FIN_WAIT2, still held, still its owner's
    client.shutdown(socket.SHUT_WR)
    half = _settled(address, ours, lambda e: e is not None and e.state == peers.FIN_WAIT2)
    assert half is not None and half.state == peers.FIN_WAIT2 and half.inode != 0
    assert peers.peer_uid(address, ours) == os.getuid()
    # closed: what is left is a FIN_WAIT2 remnant that no file holds, reported as uid 0
    client.close()
    remnant = _settled(address, ours, lambda e: e is not None and e.inode == 0)
    assert remnant is not None and remnant.inode == 0 and remnant.uid == 0
    assert peers.peer_uid(address, ours) is None
    # the server closes too: the client end is a TIME_WAIT entry, uid 0 as well, still no one
    accepted.close()
    waiting = _settled(address, ours, lambda e: e is not None and e.state == peers.TIME_WAIT)
    assert waiting == peers.SocketEntry(peers.TIME_WAIT, 0, 0)
    assert peers.peer_uid(address, ours) is None


@linux_only
def test_a_reset_connection_names_no_one(connection: tuple) -> None:
    client, accepted, address, ours = connection
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    assert _settled(address, ours, lambda e: e is None) is None
    assert peers.peer_uid(address, ours) is None
