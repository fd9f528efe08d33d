"""Which local user owns a TCP socket on this machine (Linux): the other end of a loopback connection, or
whatever listens on a port.

TCP over loopback carries no credentials (unlike a Unix socket's SO_PEERCRED), but the kernel knows every
socket's owner. It answers through sock_diag netlink (what `ss` uses) with an exact lookup by address and
port: about 20 µs. The `/proc/net/tcp` text table gives the same uids, but the kernel builds it by walking
its whole connection hash table: 6 ms per read on this machine's kernel, however few sockets there are.

Hand-written (about 40 lines of struct packing): psutil lists connections without their owner, and pyroute2
would be a large dependency for one request. Layouts: linux/netlink.h, linux/inet_diag.h.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NO_COOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF
#: nlmsghdr (16) + inet_diag_msg's family/state/timer/retrans (4) + inet_diag_sockid (48) + expires, rqueue,
#: wqueue (12): where idiag_uid sits in an answer.
_UID_AT = 16 + 4 + 48 + 12


def supported() -> bool:
    """Whether sockets' owners can be asked here."""
    return sys.platform.startswith("linux") and hasattr(socket, "AF_NETLINK")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


def _lookup(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The uid of the TCP socket bound to `local` and connected to `remote` (remote ("0.0.0.0", 0): the socket
    listening on `local`); None when there is none or the kernel cannot say."""
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
    if len(answer) < _UID_AT + 4 or struct.unpack_from("=H", answer, 4)[0] == _NLMSG_ERROR:
        return None
    return int(struct.unpack_from("=I", answer, _UID_AT)[0])


def peer_uid(peer: tuple[str, int], ours: tuple[str, int]) -> int | None:
    """The uid owning the client end of the connection from `peer` to `ours` (both (host, port)), or None
    when no such socket is on this machine (another machine, another network namespace, already closed)."""
    return _lookup(peer, ours) if supported() else None


def listener_uid(port: int, host: str = "127.0.0.1") -> int | None:
    """The uid owning the socket that accepts connections to `host:port` (bound to it or to every address),
    or None when nothing listens there, or this is not Linux."""
    return _lookup((host, port), ("0.0.0.0", 0)) if supported() else None


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
