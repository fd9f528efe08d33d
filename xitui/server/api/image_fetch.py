"""http(s) images a chat request names, fetched by the server only where its config says so (`server.image_urls`):

- "public": from hosts whose every address is on the public internet, and the connection is made to the
  address that was checked (a name that resolves to a public address when checked and to 127.0.0.1 when
  connected, DNS rebinding, reaches nothing else);
- "any": from loopback and private networks too (a trusted LAN's image server).

Each fetch: 3 redirects at most, each hop checked as the first; 5 s to connect, 15 s in all; 20 MiB at most,
counted as the bytes arrive (a compressed body is counted unpacked); no proxy from the environment (it would
connect to what it likes); 4 fetches at once in the whole server, so a flood of URLs holds 4 threads, not all.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin

from xitui.core.errors import XituiError

MAX_REDIRECTS = 3
CONNECT_SECONDS = 5.0
TOTAL_SECONDS = 15.0
AT_ONCE = threading.BoundedSemaphore(4)
REDIRECTS = (301, 302, 303, 307, 308)


@dataclass
class Target:
    """Where one hop goes: the URL as named, and the address it is pinned to."""

    url: str
    host: str
    address: str


def fetched(url: str, where: str, scope: str, max_bytes: int) -> bytes:
    """The bytes an http(s) URL answers with (`max_bytes` at most), within the limits above; a one-line error
    for anything else."""
    deadline = time.monotonic() + TOTAL_SECONDS
    if not AT_ONCE.acquire(timeout=TOTAL_SECONDS):
        raise XituiError(f"{where}: the server is fetching as many images as it does at once; send it again later "
                         "or as a data: URL")
    try:
        for _ in range(MAX_REDIRECTS + 1):
            target = resolved(url, where, scope)
            status, location, body = _get(target, where, deadline, max_bytes)
            if status in REDIRECTS and location:
                url = urljoin(url, location)
                continue
            if status != 200:
                raise XituiError(f"{where}: {target.host} answered {status}")
            return body
        raise XituiError(f"{where}: more than {MAX_REDIRECTS} redirects")
    finally:
        AT_ONCE.release()


def resolved(url: str, where: str, scope: str) -> Target:
    """The URL's host, resolved and checked against `scope`; the address the fetch connects to."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise XituiError(f"{where}: not a URL this server fetches") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise XituiError(f"{where}: only http and https URLs are fetched")
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise XituiError(f"{where}: {host[:100]!r} is not a host this machine can find") from None
    addresses = [str(info[4][0]) for info in found]
    if scope != "any":
        refused = next((a for a in addresses if not public(a)), None)
        if refused is not None:
            raise XituiError(f"{where}: {host[:100]} is at {refused}, not a public address (the config's "
                             "server.image_urls is 'public'; 'any' fetches from private networks too)")
    return Target(url, host, addresses[0])


def public(address: str) -> bool:
    """Whether an address is on the public internet (not loopback, private, link-local, shared or reserved)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _get(target: Target, where: str, deadline: float, max_bytes: int) -> tuple[int, str | None, bytes]:
    """One GET to the pinned address: (status, a redirect's location, the body of a 200)."""
    import httpx

    url = httpx.URL(target.url)
    pinned = url.copy_with(host=target.address)  # the name stays the Host header's and the certificate's
    headers = {"Host": url.netloc.decode("ascii"), "Accept": "image/*"}
    extensions = {"sni_hostname": target.host} if url.scheme == "https" else {}
    left = deadline - time.monotonic()
    try:
        with httpx.Client(timeout=httpx.Timeout(max(0.1, min(left, 10.0)), connect=CONNECT_SECONDS),
                          follow_redirects=False, trust_env=False) as client, \
                client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
            if response.status_code in REDIRECTS:
                return response.status_code, response.headers.get("location"), b""
            if response.status_code != 200:
                return response.status_code, None, b""
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise XituiError(f"{where}: the image is over {max_bytes >> 20} MiB")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise XituiError(f"{where}: the image is over {max_bytes >> 20} MiB")
                if time.monotonic() > deadline:
                    raise XituiError(f"{where}: {target.host} took over {TOTAL_SECONDS:.0f} s to send the image")
                chunks.append(chunk)
            return 200, None, b"".join(chunks)
    except httpx.TimeoutException:
        raise XituiError(f"{where}: {target.host} took over {TOTAL_SECONDS:.0f} s to send the image") from None
    except httpx.HTTPError as exc:
        raise XituiError(f"{where}: could not fetch from {target.host}: {type(exc).__name__}") from None
