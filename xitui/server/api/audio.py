"""Sound clips a chat request sends (OpenAI's `input_audio` parts: base64 of a WAV or an MP3 file), checked
on the server before a worker reads them, as images are (images.py): the format by the file's first bytes,
20 MiB, and 5 minutes read from its header (llama.cpp's multimodal library reads a clip 30 seconds a window,
750 of a model's cells a window for Whisper's kind: a long clip costs the model's whole context and more).
llama.cpp's own reader (miniaudio) decodes in the worker what passed."""

from __future__ import annotations

import base64
import binascii
import struct

from xitui.core.errors import XituiError

MAX_AUDIO_BYTES = 20 * 2**20
MAX_AUDIO_SECONDS = 300
#: MPEG-1 Layer III bit rates (kbit/s) by the frame header's index.
MP3_KBITS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
#: MPEG-2 and 2.5 Layer III bit rates.
MP3_KBITS_LOW = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)


def checked_audio(data: str, fmt: str, where: str) -> str:
    """The clip as base64 for the worker; a one-line error for anything this server does not read."""
    kind = fmt.strip().lower()
    if kind not in ("wav", "mp3"):
        raise XituiError(f"{where}.format: {fmt[:16]!r} is not one this server reads (wav, mp3)")
    if len(data) > (MAX_AUDIO_BYTES + 2) // 3 * 4:
        raise XituiError(f"{where}: the clip is over {MAX_AUDIO_BYTES >> 20} MiB")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise XituiError(f"{where}.data: not base64") from None
    seconds = wav_seconds(raw) if kind == "wav" else mp3_seconds(raw)
    if seconds is None:
        raise XituiError(f"{where}: not a {kind.upper()} file this server reads, or a damaged one")
    if seconds > MAX_AUDIO_SECONDS:
        raise XituiError(f"{where}: a clip of {seconds:.0f} s; one may last {MAX_AUDIO_SECONDS} s at most")
    return data


def wav_seconds(raw: bytes) -> float | None:
    """A WAV file's length from its chunks (its format's byte rate, its data's size), or None."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None
    byte_rate = None
    at = 12
    for _ in range(64):  # (chunks before the data: a few in any real file)
        if at + 8 > len(raw):
            return None
        name, size = raw[at:at + 4], struct.unpack_from("<I", raw, at + 4)[0]
        if name == b"fmt " and size >= 16 and at + 24 <= len(raw):
            channels, rate, byte_rate = struct.unpack_from("<HII", raw, at + 10)
            if not (1 <= channels <= 8 and 1000 <= rate <= 384_000 and byte_rate > 0):
                return None
        if name == b"data":
            if byte_rate is None:
                return None
            return min(size, len(raw) - at - 8) / byte_rate
        at += 8 + size + (size & 1)
    return None


def mp3_seconds(raw: bytes) -> float | None:
    """An MP3 file's length as its size over its first frame's bit rate (a variable rate file: roughly), or
    None when no frame is where one should be."""
    at = 0
    if raw[:3] == b"ID3" and len(raw) >= 10:  # a tag first: its size in 7-bit bytes
        at = 10 + ((raw[6] & 0x7F) << 21 | (raw[7] & 0x7F) << 14 | (raw[8] & 0x7F) << 7 | (raw[9] & 0x7F))
    if at + 4 > len(raw) or raw[at] != 0xFF or raw[at + 1] & 0xE0 != 0xE0:
        return None
    version, layer, index = (raw[at + 1] >> 3) & 3, (raw[at + 1] >> 1) & 3, raw[at + 2] >> 4
    if layer != 1 or version == 1 or not 0 < index < 15:  # Layer III of MPEG 1, 2 or 2.5
        return None
    kbits = (MP3_KBITS if version == 3 else MP3_KBITS_LOW)[index]
    return (len(raw) - at) * 8 / (kbits * 1000)
