"""http(s) images a chat request names, fetched by the server only where its config says so (`server.image_urls`):

- "public": from hosts whose every address is on the public internet (an IPv4 address inside an IPv6 one,
  NAT64 or 6to4, counts as that IPv4 address), and the connection is made to the address that was checked (a
  name that resolves to a public address when checked and to 127.0.0.1 when connected, DNS rebinding, reaches
  nothing else);
- "any": from loopback and private networks too (a trusted LAN's image server).

The fetches run on the event loop, before the request is prepared (`fetch_urls`): a slow host holds no thread,
so it cannot hold up another client's request, and a request's URLs are fetched together. Each fetch: 3
redirects at most, each hop checked as the first; 5 s to connect and 15 s in all, headers included; 20 MiB at
most, counted as the bytes arrive; the body as it is sent (a compressed one is refused: a few KB of gzip can
unpack to gigabytes before any count sees them); no proxy from the environment (it would connect to what it
likes); 4 fetches at once in the whole server.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from xitui.core.errors import XituiError

MAX_REDIRECTS = 3
CONNECT_SECONDS = 5.0
TOTAL_SECONDS = 15.0
AT_ONCE = 4
REDIRECTS = (301, 302, 303, 307, 308)
#: IPv6 ranges that carry an IPv4 address, and where it sits: NAT64's well-known prefix, 6to4, IPv4-compatible
#: and IPv4-translated addresses (a NAT64 or 6to4 gateway connects to the IPv4 address inside).
EMBEDDED_IPV4 = ((ipaddress.ip_network("64:ff9b::/96"), 0), (ipaddress.ip_network("2002::/16"), 80),
                 (ipaddress.ip_network("::/96"), 0), (ipaddress.ip_network("::ffff:0:0:0/96"), 0))
#: NAT64 for a network's own use (RFC 8215): where the IPv4 address sits is the network's choice.
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")

_slots: asyncio.Semaphore | None = None


@dataclass
class Target:
    """Where one hop goes: the URL as named, and the address it is pinned to."""

    url: str
    host: str
    address: str


async def fetch_urls(body: Any, scope: str, max_bytes: int, max_images: int) -> None:
    """Fetch every http(s) image a chat request names, together, and put each in its part as a data: URL (the
    server checks it as it checks any image); a one-line error naming the part for the first that fails."""
    parts = [(f"messages[{i}].content[{k}].image_url", part.image_url)
             for i, message in enumerate(body.messages) if isinstance(message.content, list)
             for k, part in enumerate(message.content)
             if part.type == "image_url" and part.image_url is not None
             and part.image_url.url[:8].lower().startswith(("http://", "https://"))]
    if not parts:
        return
    if len(parts) > max_images:
        raise XituiError(f"{parts[max_images][0]}: a request may send {max_images} images at most")
    got = await asyncio.gather(*(fetched(image.url, where, scope, max_bytes) for where, image in parts))
    for (_, image), data in zip(parts, got, strict=True):
        image.url = "data:application/octet-stream;base64," + base64.b64encode(data).decode("ascii")


async def fetched(url: str, where: str, scope: str, max_bytes: int) -> bytes:
    """The bytes an http(s) URL answers with (`max_bytes` at most), within the limits above; a one-line error
    for anything else."""
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(AT_ONCE)
    async with _slots:
        try:
            return await asyncio.wait_for(_follow(url, where, scope, max_bytes), TOTAL_SECONDS)
        except asyncio.TimeoutError:
            raise XituiError(f"{where}: the image took over {TOTAL_SECONDS:.0f} s to come") from None


async def _follow(url: str, where: str, scope: str, max_bytes: int) -> bytes:
    for _ in range(MAX_REDIRECTS + 1):
        target = await resolved(url, where, scope)
        status, location, body = await _get(target, where, max_bytes)
        if status in REDIRECTS and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise XituiError(f"{where}: {target.host[:100]} answered {status}")
        return body
    raise XituiError(f"{where}: more than {MAX_REDIRECTS} redirects")


async def resolved(url: str, where: str, scope: str) -> Target:
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
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise XituiError(f"{where}: {host[:100]!r} is not a host this machine can find") from None
    addresses = [str(info[4][0]) for info in found]
    if not addresses:
        raise XituiError(f"{where}: {host[:100]!r} is not a host this machine can find")
    if scope != "any":
        refused = next((a for a in addresses if not public(a)), None)
        if refused is not None:
            raise XituiError(f"{where}: {host[:100]} is at {refused}, not a public address (the config's "
                             "server.image_urls is 'public'; 'any' fetches from private networks too)")
    return Target(url, host, addresses[0])


def public(address: str) -> bool:
    """Whether an address is on the public internet (not loopback, private, link-local, shared or reserved),
    an IPv4 address carried inside an IPv6 one judged as itself."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return public(str(ip.ipv4_mapped))
        if ip in LOCAL_NAT64:
            return False
        for network, shift in EMBEDDED_IPV4:
            if ip in network:
                return public(str(ipaddress.IPv4Address((int(ip) >> shift) & 0xFFFFFFFF)))
    return ip.is_global and not ip.is_multicast


async def _get(target: Target, where: str, max_bytes: int) -> tuple[int, str | None, bytes]:
    """One GET to the pinned address: (status, a redirect's location, the body of a 200)."""
    import httpx

    url = httpx.URL(target.url)
    pinned = url.copy_with(host=target.address)  # the name stays the Host header's and the certificate's
    headers = {"Host": url.netloc.decode("ascii"), "Accept": "image/*", "Accept-Encoding": "identity"}
    extensions = {"sni_hostname": target.host} if url.scheme == "https" else {}
    host = target.host[:100]
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(TOTAL_SECONDS, connect=CONNECT_SECONDS),
                                     follow_redirects=False, trust_env=False) as client, \
                client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
            if response.status_code in REDIRECTS:
                return response.status_code, response.headers.get("location"), b""
            if response.status_code != 200:
                return response.status_code, None, b""
            encoding = response.headers.get("content-encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                raise XituiError(f"{where}: {host} sent the image compressed ({encoding[:40]}): only a file as it "
                                 "is is read")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise XituiError(f"{where}: the image is over {max_bytes >> 20} MiB")
            chunks, size = [], 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > max_bytes:
                    raise XituiError(f"{where}: the image is over {max_bytes >> 20} MiB")
                chunks.append(chunk)
            return 200, None, b"".join(chunks)
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, ValueError) as exc:
        # (InvalidURL is no HTTPError: httpx raises it reading a redirect's Location it cannot parse)
        raise XituiError(f"{where}: could not fetch from {host}: {type(exc).__name__}") from None
