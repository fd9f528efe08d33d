"""Which local user owns a TCP socket on this machine (Linux): the other end of a loopback connection, or
whatever listens on a port.

TCP over loopback carries no credentials (unlike a Unix socket's SO_PEERCRED), but the kernel knows every
socket's owner. It answers through sock_diag netlink (what `ss` uses) with an exact lookup by address and
port: about 20 µs. The `/proc/net/tcp` text table gives the same uids, but the kernel builds it by walking
its whole connection hash table: 6 ms per read on this machine's kernel, however few sockets there are.

The answer's uid alone is not enough: the kernel reports uid 0 for every socket that no file holds any more
(a TIME_WAIT entry, a closed client's FIN_WAIT2 remnant, a connection not yet accepted), which is not root.
So an answer carries the socket's state and inode too, and `peer_uid` says "unknown" (None) unless the
socket is a live connection whose uid the kernel really knows.

Hand-written (about 50 lines of struct packing): psutil lists connections without their owner, and pyroute2
would be a large dependency for one request. Layouts: linux/netlink.h, linux/inet_diag.h, net/tcp_states.h.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from typing import NamedTuple

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NO_COOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF
#: nlmsghdr (16), then inet_diag_msg: idiag_family, idiag_state (one byte each)...
_STATE_AT = 16 + 1
#: ... timer, retrans (2), inet_diag_sockid (48), expires, rqueue, wqueue (12), then idiag_uid and idiag_inode.
_UID_AT = 16 + 4 + 48 + 12

#: TCP states (net/tcp_states.h).
ESTABLISHED, FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING = 1, 4, 5, 6, 7, 8, 9, 10, 11
#: States the client end of an accepted connection can be in while a process may still hold it (half-closed
#: after sending included). TIME_WAIT, a connection not yet accepted (SYN_RECV, NEW_SYN_RECV), LISTEN (what an
#: exact lookup falls back to when the client's socket is gone) and CLOSE never name the client's owner.
CONNECTED_STATES = frozenset({ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING})


class SocketEntry(NamedTuple):
    """What sock_diag says of one socket."""

    state: int
    uid: int
    inode: int  # 0: no file holds the socket any more (closed by its process, or a TIME_WAIT entry)


def parse_answer(answer: bytes) -> SocketEntry | None:
    """The socket in a SOCK_DIAG_BY_FAMILY answer; None for an error answer (no such socket) or a short one."""
    if len(answer) < _UID_AT + 8 or struct.unpack_from("=H", answer, 4)[0] != _SOCK_DIAG_BY_FAMILY:
        return None
    uid, inode = struct.unpack_from("=II", answer, _UID_AT)
    return SocketEntry(answer[_STATE_AT], int(uid), int(inode))


def supported() -> bool:
    """Whether sockets' owners can be asked here."""
    return sys.platform.startswith("linux") and hasattr(socket, "AF_NETLINK")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


def _lookup(local: tuple[str, int], remote: tuple[str, int]) -> SocketEntry | None:
    """The TCP socket bound to `local` and connected to `remote` (remote ("0.0.0.0", 0): the socket listening
    on `local`); None when there is none or the kernel cannot say."""
    try:
        src, dst = _address(local[0]), _address(remote[0])
    except ValueError:
        return None
    if src.version != dst.version:
        if remote[1] == 0:
            dst = ipaddress.ip_address("::" if src.version == 6 else "0.0.0.0")
        else:
            return None
    family = socket.AF_INET if src.version == 4 else socket.AF_INET6
    sockid = (struct.pack(">HH", int(local[1]), int(remote[1])) + src.packed.ljust(16, b"\0")
              + dst.packed.ljust(16, b"\0") + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE))
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES) + sockid
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as sock:
            sock.settimeout(1.0)
            sock.send(header + request)
            answer = sock.recv(1024)
    except (OSError, ValueError):
        return None
    return parse_answer(answer)


def client_uid(entry: SocketEntry | None) -> int | None:
    """The uid that holds a connection's client end, from its sock_diag entry; None when the kernel does not
    know it: no such socket, a state no held client socket is in, or uid 0 from a socket no file holds (the
    kernel's answer for every such socket, whoever had it): uid 0 means root only from a live socket."""
    if entry is None or entry.state not in CONNECTED_STATES or (entry.uid == 0 and entry.inode == 0):
        return None
    return entry.uid


def peer_uid(peer: tuple[str, int], ours: tuple[str, int]) -> int | None:
    """The uid owning the client end of the connection from `peer` to `ours` (both (host, port)), or None
    when the kernel cannot say (another machine, another network namespace, a socket already closed or
    reset, a TIME_WAIT entry): callers refuse None, never read it as anyone."""
    return client_uid(_lookup(peer, ours)) if supported() else None


def listener_uid(port: int, host: str = "127.0.0.1") -> int | None:
    """The uid owning the socket that accepts connections to `host:port` (bound to it or to every address),
    or None when nothing listens there, or this is not Linux."""
    entry = _lookup((host, port), ("0.0.0.0", 0)) if supported() else None
    return entry.uid if entry is not None else None


def user_name(uid: int) -> str:
    """A uid as its user name where it has one."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback as a dual-stack socket sees it (::ffff:127.0.0.1)."""
    try:
        return _address(host).is_loopback
    except ValueError:
        return False
