"""http(s) image URLs, fetched by the server only where its config allows (server/api/image_fetch.py), from a
real HTTP server on a real port: every way a URL can go wrong is a one-line error, nothing is fetched from
this machine or a private network unless the config says `any`, and no host can make a fetch last longer
than its time or take more memory than its bytes."""

from __future__ import annotations

import contextlib
import gzip
import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from xitui.core.errors import XituiError
from xitui.server.api import image_fetch
from xitui.server.api.images import MAX_IMAGE_BYTES, checked_bytes, checked_image


def fetch(url: str, scope: str = "any", where: str = "image_url") -> str:
    """The image at `url` as the server fetches and checks it: base64."""
    import asyncio

    return checked_bytes(asyncio.run(image_fetch.fetched(url, where, scope, MAX_IMAGE_BYTES)), where)


def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 10), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


class Pictures(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the fetch gave up on it: its connection is gone
            super().handle()

    def send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if "Content_Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path
        if path == "/red.png":
            self.send(200, png(), Content_Type="image/png")
        elif path == "/host":
            self.send(200, self.headers.get("Host", "").encode())
        elif path == "/hop":
            self.send(302, Location="/red.png")
        elif path == "/loop":
            self.send(302, Location="/loop")
        elif path == "/odd-hop":  # a Location httpx cannot parse (it raised past the server: a 500)
            self.send(302, Location="http://x:1/a b\x7f")
        elif path == "/missing":
            self.send(404, b"no")
        elif path == "/text":
            self.send(200, b"hello, not a picture")
        elif path == "/huge":  # says so in its header
            self.send_response(200)
            self.send_header("Content-Length", str(30 * 2**20))
            self.end_headers()
        elif path == "/endless":  # no length said: counted as it comes
            self.send_response(200)
            self.end_headers()
            chunk = b"\x89PNG" + b"\x00" * 2**20
            for _ in range(25):
                self.wfile.write(chunk)
        elif path == "/bomb":  # 30 MiB of zeros in 30 KB: refused unread, whatever it claims
            body = gzip.compress(b"\x00" * 30 * 2**20)
            self.send(200, body, Content_Encoding="gzip")
        elif path == "/slow-head":  # its headers a byte at a time, each within any read time-out
            for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 60:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.5)
        elif path == "/late.png":  # a valid image after a second
            time.sleep(1)
            self.send(200, png())
        elif path == "/slow":  # one byte a second
            self.send_response(200)
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b"\x89")
                self.wfile.flush()
                time.sleep(1)
        else:
            self.send(404)


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pictures)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_off_by_default_and_public_refuses_this_machine(site: str) -> None:
    with pytest.raises(XituiError) as off:
        checked_image(f"{site}/red.png", "image_url")
    assert "this server fetches no URLs" in str(off.value) and "server.image_urls" in str(off.value)
    for url in (f"{site}/red.png", "http://localhost:9/x.png", "http://[::1]:9/x.png", "http://10.1.2.3/x.png",
                "http://169.254.169.254/latest/meta-data", "http://[::ffff:127.0.0.1]:9/x.png",
                "http://2130706433/x.png", "http://127.1/x.png", "http://evil@127.0.0.1/x.png"):
        with pytest.raises(XituiError) as refused:
            fetch(url, "public")
        assert "not a public address" in str(refused.value), url


def test_any_fetches_from_this_machine_and_checks_the_image_as_a_data_url_is(site: str) -> None:
    import base64

    assert base64.b64decode(fetch(f"{site}/red.png")) == png()
    assert base64.b64decode(fetch(f"{site}/hop")) == png()  # a redirect followed
    with pytest.raises(XituiError) as text:
        fetch(f"{site}/text")
    assert "not an image this server reads" in str(text.value)


@pytest.mark.parametrize(("path", "says"), [
    ("/missing", "127.0.0.1 answered 404"),
    ("/loop", "more than 3 redirects"),
    ("/odd-hop", "could not fetch from 127.0.0.1"),
    ("/huge", "the image is over 20 MiB"),
    ("/endless", "the image is over 20 MiB"),
    ("/bomb", "sent the image compressed (gzip)"),
])
def test_urls_at_their_worst_are_one_line(site: str, path: str, says: str) -> None:
    with pytest.raises(XituiError) as refused:
        fetch(f"{site}{path}", where="content[1].image_url")
    assert str(refused.value).startswith("content[1].image_url: ") and says in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("path", ["/slow", "/slow-head"])
def test_a_slow_host_is_cut_off_at_the_time_limit_headers_and_all(site: str, path: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte at a time keeps any read time-out from firing: the limit is on the whole fetch."""
    monkeypatch.setattr(image_fetch, "TOTAL_SECONDS", 2.0)
    started = time.monotonic()
    with pytest.raises(XituiError) as slow:
        fetch(f"{site}{path}")
    assert "took over 2 s" in str(slow.value) and time.monotonic() - started < 4


def test_a_requests_urls_are_fetched_together_and_put_in_place(site: str) -> None:
    import asyncio

    from xitui.server.api.bodies import ChatBody

    body = ChatBody.model_validate({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "these"}, *(
            {"type": "image_url", "image_url": {"url": f"{site}/late.png"}} for _ in range(3))]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})
    started = time.monotonic()
    asyncio.run(image_fetch.fetch_urls(body, "any", MAX_IMAGE_BYTES, 16))
    assert time.monotonic() - started < 2.5  # three one-second hosts at once, not one after another
    urls = [part.image_url.url for message in body.messages for part in message.content if part.image_url]
    assert all(url.startswith("data:application/octet-stream;base64,") for url in urls[:3])
    assert urls[3] == "data:image/png;base64,AAAA"  # a data: URL is left as it was
    too_many = ChatBody.model_validate({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"{site}/red.png"}} for _ in range(17)]}]})
    with pytest.raises(XituiError) as refused:
        asyncio.run(image_fetch.fetch_urls(too_many, "any", MAX_IMAGE_BYTES, 16))
    assert str(refused.value) == "messages[0].content[16].image_url: a request may send 16 images at most"


@pytest.mark.parametrize("url", ["ftp://example.com/x.png", "http://", "http://no-such-host.invalid/x.png",
                                 "http://exa mple.com/x.png", "https://" + "a" * 300 + ".com/x.png"])
def test_urls_that_name_nothing_fetchable(url: str) -> None:
    with pytest.raises(XituiError) as refused:
        fetch(url)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 300


def test_the_connection_goes_to_the_address_checked_and_names_the_host(site: str) -> None:
    """The fetch connects to the address the check resolved (no second lookup a rebinding name could answer
    differently), and still says the host's name to it."""
    import asyncio

    port = site.rsplit(":", 1)[1]
    target = asyncio.run(image_fetch.resolved(f"http://localhost:{port}/host", "image_url", "any"))
    assert target.address in ("127.0.0.1", "::1") and target.host == "localhost"
    status, _, body = asyncio.run(image_fetch._get(target, "image_url", 2**20))
    assert (status, body) == (200, f"localhost:{port}".encode())


@pytest.mark.parametrize(("address", "is_public"), [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("10.0.0.1", False), ("192.168.1.1", False),
    ("172.16.0.1", False), ("100.64.0.1", False), ("169.254.169.254", False), ("127.0.0.1", False),
    ("::1", False), ("fe80::1%eth0", False), ("fc00::1", False), ("::ffff:10.0.0.1", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("::ffff:8.8.8.8", True),
    # IPv4 inside IPv6: NAT64, 6to4, IPv4-compatible, IPv4-translated (a gateway connects to the IPv4 one)
    ("64:ff9b::a9fe:a9fe", False), ("64:ff9b::7f00:1", False), ("64:ff9b::808:808", True),
    ("2002:a9fe:a9fe::", False), ("2002:808:808::", True), ("::7f00:1", False), ("::ffff:0:7f00:1", False),
    ("64:ff9b:1::1", False),
])
def test_what_counts_as_public(address: str, is_public: bool) -> None:
    assert image_fetch.public(address) is is_public


# --- what the server decodes for every image, fetched or sent -------------------------------------------------


def test_a_jpeg_of_thousands_of_scans_is_refused_and_an_ordinary_progressive_one_is_not() -> None:
    """Each scan is a pass over the whole picture: 20,000 one-line scans in 726 KB held a model's engine for
    7.5 s (24.5 s on transformers), and its other clients with it."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (256, 256), 128).save(out, "JPEG", progressive=True)
    progressive = out.getvalue()
    assert checked_bytes(progressive, "image_url")  # (a progressive JPEG has about ten scans)
    last = progressive.rindex(b"\xff\xda")
    many = progressive[:last] + progressive[last:-2] * 150 + b"\xff\xd9"
    with pytest.raises(XituiError) as refused:
        checked_bytes(many, "image_url")
    assert "scans; one may have 100 at most" in str(refused.value)


def test_a_webp_is_sent_on_as_a_bounded_png() -> None:
    import base64

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 120, 200)).save(out, "WEBP")
    sent = base64.b64decode(checked_bytes(out.getvalue(), "image_url"))
    with Image.open(io.BytesIO(sent)) as png_image:
        assert png_image.format == "PNG" and png_image.size == (2048, 1536)  # (more than a model reads)
