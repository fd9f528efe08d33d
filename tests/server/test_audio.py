"""Models that hear, on a real server: a tiny Qwen2-Audio (random weights, converted with its projector by
llama.cpp's converter: tests/model_files.py) answers sound clips sent as OpenAI `input_audio` parts, through
the same path as images (llama.cpp's multimodal library, the clip's cells decoded into the request's own
sequence). Its answers are noise, but deterministic: the same clip gives the same answer, another clip
another, no clip a third; the clip's cells count in usage. Clips at their worst are one-line 400s."""

from __future__ import annotations

import base64
import io
import json
import math
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.model_files import tiny_alm
from tests.server.conftest import ServerProcess
from tests.server.test_vision import data_url, png, vlm_spec
from xitui.client import Client

pytestmark = pytest.mark.slow


def wav(freq: float, seconds: float = 1.0, rate: int = 16000, width: int = 2) -> bytes:
    import wave

    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    wave_form = 0.5 * np.sin(2 * math.pi * freq * t)
    samples = (wave_form * 32767).astype("<i2") if width == 2 else ((wave_form + 1) * 127).astype("u1")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


def hearing(*clips: bytes, fmt: str = "wav", text: str = "What do you hear?") -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "input_audio", "input_audio": {"data": base64.b64encode(c).decode(), "format": fmt}}
              for c in clips]
    return [{"role": "user", "content": parts}]


def chat(server: ServerProcess, uid: str, messages: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
        "model": uid, "messages": messages, "max_tokens": 8, "temperature": 0})


def heard(server: ServerProcess, uid: str, *clips: bytes) -> tuple[str, dict[str, Any]]:
    done = chat(server, uid, hearing(*clips))
    assert done.status_code == 200, done.text
    return done.json()["choices"][0]["message"]["content"], done.json()["usage"]


@pytest.fixture(scope="module")
def alm(server: ServerProcess) -> Iterator[str]:
    gguf, projector = tiny_alm()
    client = Client(server.url)
    client.register_model("LLM", json.dumps({
        "version": 2, "model_name": "tiny-alm", "model_lang": ["en"], "model_ability": ["chat", "audio"],
        "context_length": 2048,
        "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_01", "quantization": "F16",
                         "model_file_name_template": "tiny-alm-{quantization}.gguf", "model_uri": str(gguf.parent),
                         "multimodal_projectors": [projector.name]}]}))
    uid = client.launch_model(model_name="tiny-alm", n_parallel=2)
    yield uid
    client.terminate_model(uid)
    client.unregister_model("LLM", "tiny-alm")


def test_the_clip_decides_the_answer_and_its_cells_count(server: ServerProcess, alm: str) -> None:
    # (29 s clips, one window each: a short one is mostly the silence its window is padded with)
    low, usage = heard(server, alm, wav(440, seconds=29))
    again, _ = heard(server, alm, wav(440, seconds=29))
    high, _ = heard(server, alm, wav(3000, seconds=29))
    silent, usage_silent = heard(server, alm)
    assert low == again and low != high and low != silent
    assert usage["prompt_tokens_details"]["audio_tokens"] == 750  # one 30-second window, as Whisper reads
    assert "image_tokens" not in usage["prompt_tokens_details"]
    assert usage["prompt_tokens"] - usage_silent["prompt_tokens"] >= 750
    described = Client(server.url).describe_model(alm)
    assert described["reads"] == ["audio"] and described["multimodal_projector"] == "mmproj-tiny-alm-f16.gguf"


def test_clips_and_images_go_only_to_models_that_read_them(server: ServerProcess, alm: str) -> None:
    refused = chat(server, alm, [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(png(seed=1))}}]}])
    assert refused.status_code == 400 and "this model reads text and audio" in refused.json()["detail"]
    client = Client(server.url)
    client.register_model("LLM", vlm_spec("seeing-only"))
    try:
        uid = client.launch_model(model_name="seeing-only")
        refused = chat(server, uid, hearing(wav(440)))
        assert refused.status_code == 400, refused.text
        assert "'input_audio' parts are read by models whose projector hears" in refused.json()["detail"]
        assert "this model reads text and images" in refused.json()["detail"]
    finally:
        client.terminate_model("seeing-only")
        client.unregister_model("LLM", "seeing-only")


def _odd_wav(codec: int) -> bytes:
    """A WAV whose header reads (one channel, 16 kHz) but whose codec no reader knows."""
    data = b"\x00\x01" * 8000
    fmt = struct.pack("<HHIIHH", codec, 1, 16000, 32000, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", len(data)) + data


@pytest.mark.parametrize(("messages", "says"), [
    (hearing(wav(440), fmt="flac"), "format: 'flac' is not one this server reads (wav, mp3)"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}]}],
     "data: not base64"),
    (hearing(b"not a wave file at all"), "not a WAV file this server reads"),
    (hearing(b"\xff\xfb\x00\x00" + b"\x00" * 64, fmt="mp3"), "not a MP3 file this server reads"),
    (hearing(wav(440, seconds=301, rate=8000, width=1)), "a clip of 301 s; one may last 300 s at most"),
    (hearing(*[wav(440, seconds=0.1)] * 17), "a request may send 16 clips at most"),
    ([{"role": "user", "content": [{"type": "input_audio"}]}], "input_audio: required for an audio part"),
    (hearing(_odd_wav(0x1234)), "not a file llama.cpp can read"),
])
def test_clips_at_their_worst_are_one_line_and_others_are_served(server: ServerProcess, alm: str,
                                                                 messages: list[dict[str, Any]], says: str) -> None:
    refused = chat(server, alm, messages)
    assert refused.status_code == 400 and says in refused.json()["detail"], refused.text
    assert "\n" not in refused.json()["detail"]
    assert heard(server, alm, wav(660))[0]  # the model serves the next request


def test_a_clip_the_workers_reader_refuses_costs_no_other_client_its_stream(server: ServerProcess,
                                                                           alm: str) -> None:
    """A WAV whose header passes the server's check but whose codec no reader knows is refused by llama.cpp's
    reader, for its request alone, while another client's stream on the same model goes on to its end."""
    from concurrent.futures import ThreadPoolExecutor

    def streamed() -> tuple[int, int]:
        pieces = 0
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", timeout=120, json={
                "model": alm, "messages": hearing(wav(880, seconds=2)), "max_tokens": 24, "temperature": 0,
                "ignore_eos": True, "stream": True}) as reply:
            for line in reply.iter_lines():
                pieces += line.startswith("data: {") and '"content"' in line
            return reply.status_code, pieces

    with ThreadPoolExecutor(2) as pool:
        other = pool.submit(streamed)
        bad = [pool.submit(chat, server, alm, hearing(_odd_wav(0x1234))) for _ in range(3)]
        assert all(b.result().status_code == 400 for b in bad)
        status, pieces = other.result()
    assert status == 200 and pieces >= 10
