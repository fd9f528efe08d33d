"""Images a chat request sends (OpenAI's `image_url` parts), checked on the server before any worker reads
them: data URLs, and http(s) URLs only where the config allows (`server.image_urls`: a local server must not
become a way for its clients to reach other hosts), a size, a count and a pixel limit read from the file's
header (a small file can claim a huge picture), each a one-line 400. Pillow reads the headers; the engine's
own reader decodes in the worker what passed (image_fetch.py fetches a URL's)."""

from __future__ import annotations

import base64
import binascii
import io

from xitui.core.errors import XituiError

#: Images in one request, bytes in one image (decoded), and pixels in one image (4096 x 4096).
MAX_IMAGES = 16
MAX_IMAGE_BYTES = 20 * 2**20
MAX_PIXELS = 4096 * 4096
#: Scans a JPEG may have: a progressive one has about ten, and each is a pass over the whole picture (a
#: 726 KB JPEG of 20,000 one-line scans held a model's engine for 7.5 s, 24.5 s on transformers).
MAX_JPEG_SCANS = 100
#: The longest side a converted image (WebP...) is sent on with: more than a vision model reads (Gemma 3
#: reads 896 px), and a bound on the PNG it becomes.
CONVERTED_SIDE = 2048
#: What llama.cpp's reader decodes as it is; WebP is sent on as PNG.
AS_THEY_ARE = ("PNG", "JPEG", "GIF", "BMP")
#: The formats read, by their first bytes: Pillow is never shown another (its ICO reader, for one, decodes
#: the whole picture while opening the file, before its size can be checked: 700 MiB for a 684 KB file).
MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
         (b"BM", "BMP"))


def checked_image(url: str, where: str) -> str:
    """The image of a data URL, as base64 for the worker; a one-line error for anything else (an http(s) URL
    the config lets the server fetch was fetched before: image_fetch.py)."""
    if url[:8].lower().startswith(("http://", "https://")):
        raise XituiError(f"{where}: this server fetches no URLs (a local server must not reach other hosts for "
                         "its clients; its config's server.image_urls allows it): send the image as a data: URL "
                         "(data:image/png;base64,...)")
    if not url[:5].lower() == "data:":
        raise XituiError(f"{where}: not a data: URL (data:image/png;base64,...)")
    header, comma, payload = url.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise XituiError(f"{where}: a data: URL of base64 is read (data:image/png;base64,...)")
    if len(payload) > (MAX_IMAGE_BYTES + 2) // 3 * 4:
        raise XituiError(f"{where}: the image is over {MAX_IMAGE_BYTES >> 20} MiB")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise XituiError(f"{where}: its data is not base64") from None
    return checked_bytes(raw, where, payload)


def checked_bytes(raw: bytes, where: str, payload: str | None = None) -> str:
    """An image file's bytes, checked (its kind by its first bytes, its pixels by its header), as base64
    (`payload`, where they came as that)."""
    if len(raw) > MAX_IMAGE_BYTES:
        raise XituiError(f"{where}: the image is over {MAX_IMAGE_BYTES >> 20} MiB")
    sniffed = next((kind for magic, kind in MAGIC if raw.startswith(magic)), None)
    if sniffed is None and raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        sniffed = "WEBP"
    if sniffed is None:
        raise XituiError(f"{where}: not an image this server reads (PNG, JPEG, GIF, BMP, WebP)")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw), formats=[sniffed]) as image:  # the header only
            width, height = image.size
            kind = image.format
            if width * height > MAX_PIXELS:
                raise XituiError(f"{where}: {width}x{height} is {width * height / 1e6:.1f} megapixels; an image may "
                                 f"have {MAX_PIXELS / 1e6:.1f} at most")
            # (0xFF 0xDA is a scan's start: inside a scan's data a 0xFF byte is followed by 0x00 or a restart)
            scans = raw.count(b"\xff\xda") if kind == "JPEG" else 0
            if scans > MAX_JPEG_SCANS:
                raise XituiError(f"{where}: a JPEG of {scans} scans; one may have {MAX_JPEG_SCANS} at most (save it "
                                 "again as a baseline JPEG or a PNG)")
            if kind in AS_THEY_ARE:
                image.verify()  # its structure (a PNG's chunks and their checksums): no pixels decoded
                return payload if payload is not None else base64.b64encode(raw).decode("ascii")
            image.thumbnail((CONVERTED_SIDE, CONVERTED_SIDE))
            out = io.BytesIO()
            image.convert("RGB").save(out, "PNG", compress_level=1)  # (level 6 took 8 s on a smooth 4096x4096)
            if out.tell() > MAX_IMAGE_BYTES:
                raise XituiError(f"{where}: the image is over {MAX_IMAGE_BYTES >> 20} MiB as a PNG")
            return base64.b64encode(out.getvalue()).decode("ascii")
    except XituiError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError):
        raise XituiError(f"{where}: not an image this server reads (PNG, JPEG, GIF, BMP, WebP), or a damaged "
                         "one") from None
