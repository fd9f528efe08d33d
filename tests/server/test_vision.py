"""Models that see, on a real server: a tiny Gemma 3 vision model (random weights, converted with its projector
by llama.cpp's converter: tests/model_files.py) answers images sent as OpenAI image parts. Its answers are
noise, but deterministic, which is what the plumbing needs: the same image gives the same answer, another
image another, no image a third; the image's cells count in usage and are reused by the next turn. Images at
their worst are one-line 400s, and never cost another client its answer."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.model_files import tiny_vlm
from tests.server.conftest import ServerProcess
from xitui.client import Client, ClientError

pytestmark = pytest.mark.slow


def vlm_spec(name: str = "tiny-vlm", projectors: list[str] | None = None) -> str:
    gguf, projector = tiny_vlm()
    return json.dumps({
        "version": 2, "model_name": name, "model_lang": ["en"], "model_ability": ["chat", "vision"],
        "context_length": 2048,
        "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_02", "quantization": "F16",
                         "model_file_name_template": "tiny-vlm-{quantization}.gguf", "model_uri": str(gguf.parent),
                         "multimodal_projectors": projectors or [projector.name]}]})


@pytest.fixture(scope="module")
def vlm(server: ServerProcess) -> Iterator[str]:
    client = Client(server.url)
    client.register_model("LLM", vlm_spec())
    uid = client.launch_model(model_name="tiny-vlm", n_parallel=8)
    yield uid
    client.terminate_model(uid)
    client.unregister_model("LLM", "tiny-vlm")


def png(color: tuple[int, int, int] | None = None, size: tuple[int, int] = (300, 200), seed: int = 0) -> bytes:
    import numpy as np
    from PIL import Image

    if color is None:
        pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
    else:
        image = Image.new("RGB", size, color)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def data_url(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def asking(*images: str, text: str = "What is in the picture?") -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return [{"role": "user", "content": parts}]


def chat(server: ServerProcess, uid: str, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
        "model": uid, "messages": messages, "max_tokens": 8, "temperature": 0, **extra})


def answer(server: ServerProcess, uid: str, *images: str) -> tuple[str, dict[str, Any]]:
    done = chat(server, uid, asking(*images))
    assert done.status_code == 200, done.text
    body = done.json()
    return body["choices"][0]["message"]["content"], body["usage"]


def sdk_answers_whole_and_streamed(server: ServerProcess, uid: str) -> tuple[str | None, str]:
    """An image part sent by the openai SDK: the whole answer, and the same request's streamed pieces joined."""
    import openai

    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed")
    messages: Any = asking(data_url(png(seed=1)))
    whole = oa.chat.completions.create(model=uid, messages=messages, max_tokens=8, temperature=0)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in oa.chat.completions.create(
        model=uid, messages=messages, max_tokens=8, temperature=0, stream=True) if chunk.choices)
    return whole.choices[0].message.content, streamed


def test_the_openai_sdk_sends_an_image_whole_and_streamed(server: ServerProcess, vlm: str) -> None:
    whole, streamed = sdk_answers_whole_and_streamed(server, vlm)
    assert whole and streamed == whole
    described = Client(server.url).describe_model(vlm)
    assert described["multimodal_projector"] == "mmproj-tiny-vlm-f16.gguf" and described["reads"] == ["images"]


def test_the_image_decides_the_answer_and_its_cells_count_and_are_reused(server: ServerProcess, vlm: str) -> None:
    first, usage = answer(server, vlm, data_url(png(seed=2)))
    again, usage_again = answer(server, vlm, data_url(png(seed=2)))
    other, _ = answer(server, vlm, data_url(png((200, 30, 30))))
    blind, usage_blind = answer(server, vlm)
    assert first == again and first != other and first != blind
    # the image's cells (16: the processor's image_seq_length; Gemma 3's own has 256) are prompt tokens
    assert usage["prompt_tokens_details"]["image_tokens"] == 16
    assert usage["prompt_tokens"] - usage_blind["prompt_tokens"] >= 16
    # the same image at the same place: its cells are reused, as any prompt prefix is
    assert usage_again["prompt_tokens_details"]["cached_tokens"] >= usage["prompt_tokens"] - 2


def test_eight_image_requests_at_once_each_get_their_own_images_answer(server: ServerProcess, vlm: str) -> None:
    urls = [data_url(png(seed=100 + i)) for i in range(8)]
    alone = [answer(server, vlm, url)[0] for url in urls]
    assert len(set(alone)) > 1  # (the images do differ in what they make the model say)
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda url: answer(server, vlm, url)[0], urls))
    assert together == alone


@pytest.mark.parametrize(("url", "says"), [
    ("http://127.0.0.1:9/cat.png", "this server fetches no URLs"),
    ("file:///etc/passwd", "not a data: URL"),
    ("data:image/png,rawbytes", "a data: URL of base64 is read"),
    ("data:image/png;base64,%%%not base64%%%", "its data is not base64"),
    (data_url(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64), "not an image this server reads"),
    (data_url(png((1, 2, 3), size=(5000, 4000))), "5000x4000 is 20.0 megapixels; an image may have 16.8 at most"),
    (data_url(b"GIF89a" + b"\xff" * 32, "gif"), "not an image this server reads"),
])
def test_images_at_their_worst_are_one_line_and_others_are_served(server: ServerProcess, vlm: str, url: str,
                                                                  says: str) -> None:
    refused = chat(server, vlm, asking(url))
    assert refused.status_code == 400 and says in refused.json()["detail"], refused.text
    assert "\n" not in refused.json()["detail"]
    assert answer(server, vlm, data_url(png(seed=3)))[0]  # the model serves the next request


def test_a_damaged_image_the_header_check_passes_is_refused_by_the_worker_alone(server: ServerProcess,
                                                                                vlm: str) -> None:
    """A JPEG whose header reads but whose data is cut: llama.cpp's reader refuses it, a 400 for that request,
    while another request's image is answered alongside."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(out, "JPEG")
    cut = out.getvalue()[:200]
    with ThreadPoolExecutor(2) as pool:
        bad = pool.submit(chat, server, vlm, asking(data_url(cut, "jpeg")))
        good = pool.submit(answer, server, vlm, data_url(png(seed=4)))
        assert good.result()[0]
        refused = bad.result()
    assert refused.status_code == 400, refused.text
    assert "\n" not in refused.json()["detail"]


def test_too_many_images_and_images_to_a_text_model(server: ServerProcess, vlm: str, small_gguf: Any) -> None:
    url = data_url(png((9, 9, 9), size=(16, 16)))
    refused = chat(server, vlm, asking(*[url] * 17))
    assert refused.status_code == 400 and "16 images at most" in refused.json()["detail"]
    from tests.server.conftest import gguf_spec

    client = Client(server.url)
    client.register_model("LLM", gguf_spec("blind-smol", small_gguf))
    try:
        uid = client.launch_model(model_name="blind-smol")
        refused = chat(server, uid, asking(url))
        assert refused.status_code == 400 and "'image_url' parts are read by vision models" in \
            refused.json()["detail"]
    finally:
        client.terminate_model("blind-smol")
        client.unregister_model("LLM", "blind-smol")


def test_the_launch_picks_a_projector_of_the_specs(server: ServerProcess) -> None:
    client = Client(server.url)
    client.register_model("LLM", vlm_spec("tiny-vlm-2"))
    try:
        with pytest.raises(ClientError) as err:
            client.launch_model(model_name="tiny-vlm-2", multimodal_projector="mmproj-other.gguf")
        assert "multimodal_projector: 'mmproj-other.gguf' is not one of tiny-vlm-2's (mmproj-tiny-vlm-f16.gguf)" \
            in str(err.value) and err.value.status_code == 400
    finally:
        client.unregister_model("LLM", "tiny-vlm-2")
    client.register_model("LLM", vlm_spec("tiny-vlm-3", ["mmproj-missing.gguf"]))
    try:
        with pytest.raises(ClientError) as err:
            client.launch_model(model_name="tiny-vlm-3")
        assert "projector file not found" in str(err.value) and "\n" not in str(err.value)
    finally:
        client.unregister_model("LLM", "tiny-vlm-3")


def test_xitui_chat_sends_an_image_file_piped_or_as_an_argument(server: ServerProcess, vlm: str,
                                                               tmp_path: Any) -> None:
    from tests.support.cli import xitui

    photo = tmp_path / "photo.png"
    photo.write_bytes(png(seed=5))
    expected, _ = answer(server, vlm, data_url(photo.read_bytes()))
    common = ("-e", server.url, "-u", vlm, "--temperature", "0", "--max-tokens", "8", "--no-save")
    said = xitui("chat", *common, "--image", str(photo), "What is in the picture?")
    assert said.returncode == 0 and said.stdout.strip() == expected.strip(), said.stderr
    piped = xitui("chat", *common, "--image", str(photo), stdin="What is in the picture?")
    assert piped.returncode == 0 and piped.stdout.strip() == expected.strip(), piped.stderr
    missing = xitui("chat", *common, "--image", str(tmp_path / "nope.png"), "hi")
    assert missing.returncode == 1 and "nope.png: No such file or directory" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    refused = xitui("chat", *common, "--image", str(text), "hi")
    assert refused.returncode == 1 and "notes.txt: not an image file (text/plain)" in refused.stderr


def test_a_saved_chat_keeps_its_image_and_a_resumed_one_sends_it_again(server: ServerProcess, vlm: str,
                                                                         tmp_path: Any) -> None:
    """The next turn of a resumed conversation is answered as if the image were still in it (it is: the store
    kept it), and `chats show` says where it was sent."""
    from tests.support.cli import xitui

    photo = tmp_path / "photo.png"
    photo.write_bytes(png(seed=11))
    env = {"XITUI_HOME": str(tmp_path / "home"), "XITUI_CONFIG": str(tmp_path / "home" / "config.toml")}
    common = ("-e", server.url, "--temperature", "0", "--max-tokens", "8")
    first = xitui("chat", *common, "-u", vlm, "--image", str(photo), "What is in the picture?", env=env)
    assert first.returncode == 0, first.stderr
    resumed = xitui("chat", *common, "--continue", "And now?", env=env)
    assert resumed.returncode == 0, resumed.stderr
    history = [*asking(data_url(photo.read_bytes())), {"role": "assistant", "content": first.stdout.strip()},
               {"role": "user", "content": "And now?"}]
    with_image = chat(server, vlm, history).json()["choices"][0]["message"]["content"]
    history[0] = {"role": "user", "content": "What is in the picture?"}
    without = chat(server, vlm, history).json()["choices"][0]["message"]["content"]
    assert with_image != without and resumed.stdout.strip() == with_image.strip()
    shown = xitui("chats", "show", "1", env={**env, "XITUI_PLAIN": "1"})
    assert "*[image: photo.png, image/png," in shown.stdout, shown.stdout


def test_the_estimate_counts_the_projector(server: ServerProcess, vlm: str) -> None:
    gguf, projector = tiny_vlm()
    found = Client(server.url).estimate_launch(model_name="tiny-vlm")["estimate"]
    assert any("projector" in note and projector.name in note for note in found["notes"]), found
    assert found["weights"] == gguf.stat().st_size + projector.stat().st_size


# --- what a helper found, breaking the first version --------------------------------------------------------

DATA = __import__("pathlib").Path(__file__).parent.parent / "data" / "vision"


def test_two_images_whose_short_ids_matched_get_their_own_answers(server: ServerProcess, vlm: str) -> None:
    """These two images (a tEXt chunk searched for, on one core, in 7 s) had the same 28-bit placeholder: the
    second was answered from the first's cells, its client given the other image's answer."""
    a, b = (DATA / "collided-a.png").read_bytes(), (DATA / "collided-b.png").read_bytes()
    own_a, _ = answer(server, vlm, data_url(a))
    answer(server, vlm, data_url(b))
    after_b, usage = answer(server, vlm, data_url(a))
    assert after_b == own_a and usage["prompt_tokens_details"]["cached_tokens"] < 20  # only the text before it


def test_a_prompt_that_fills_the_pool_beside_a_cached_one_is_answered_and_stalls_no_one(server: ServerProcess,
                                                                                          vlm: str) -> None:
    """After one image's exchange (its cells kept), 7 images and a long text (1900 cells of the 2048): the whole
    kept cache counted against the room the newcomer needed, so it waited forever, and every request behind it."""
    import time

    answer(server, vlm, data_url(png(seed=3)))

    def seven_and_text() -> tuple[str, dict[str, Any]]:
        done = chat(server, vlm, asking(*[data_url(png(seed=60 + i)) for i in range(7)], text="cat " * 1720))
        assert done.status_code == 200, done.text
        return done.json()["choices"][0]["message"]["content"], done.json()["usage"]

    with ThreadPoolExecutor(2) as pool:
        seven = pool.submit(seven_and_text)
        time.sleep(1.0)  # (admitted first: it takes the sequence the last exchange's cells are in)
        other = pool.submit(chat, server, vlm, [{"role": "user", "content": "hi"}])
        assert other.result(timeout=60).status_code == 200
        text, usage = seven.result(timeout=60)
    assert text and usage["prompt_tokens"] > 1850 and usage["prompt_tokens_details"]["image_tokens"] == 7 * 16


def test_only_the_formats_read_reach_pillow(server: ServerProcess, vlm: str) -> None:
    """An ICO holding a 16000x11000 PNG took the server 700 MiB to refuse (Pillow's ICO reader decodes while
    opening): formats are told by their first bytes, and no other reaches Pillow."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    inner = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16000, 11000, 8, 6, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")
    ico = struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(inner), 22) + inner
    tiff = b"II*\x00" + b"\x00" * 64
    for data, kind in ((ico, "x-icon"), (tiff, "tiff")):
        refused = chat(server, vlm, asking(data_url(data, kind)))
        assert refused.status_code == 400 and "not an image this server reads (PNG, JPEG, GIF, BMP, WebP)" in \
            refused.json()["detail"], refused.text
    from PIL import Image

    webp = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 90, 200)).save(webp, "WEBP")
    assert answer(server, vlm, data_url(webp.getvalue(), "webp"))[0]  # WebP: sent on as PNG


def test_xitui_check_tries_what_a_vision_spec_promises(server: ServerProcess, vlm: str) -> None:
    """`xitui check` on a vision model sends it two pictures and none: the images reach the model."""
    from tests.support.cli import xitui

    ran = xitui("check", "tiny-vlm", "--json", "--only", "vision", "-e", server.url)
    report = json.loads(ran.stdout)
    assert [(r["name"], r["status"]) for r in report["rows"]] == [("vision", "ok")], report
    assert report["launched_for_the_check"] is False  # the running model was used


@pytest.mark.alone  # (an answer beside slow fetches is bounded in time)
def test_a_server_configured_to_fetch_reads_an_http_image_as_its_data_url(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """server.image_urls = "any": an http URL to an image server on this machine is fetched and answered as the
    same image sent as a data URL; the default server (above) refuses it. Hosts that send a byte at a time
    hold up no other client (they held the two threads that prepare every image request)."""
    import contextlib
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.support.servers import configured_server

    picture = png(seed=12)

    class One(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def handle(self) -> None:
            with contextlib.suppress(OSError):  # (the fetch gave up on it)
                super().handle()

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/slow-head":
                for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 40:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.5)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(picture)))
            self.end_headers()
            self.wfile.write(picture)

    site = ThreadingHTTPServer(("127.0.0.1", 0), One)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    server = configured_server(tmp_path_factory, "fetching", '[server]\nimage_urls = "any"\n')
    try:
        client = Client(server.url)
        client.register_model("LLM", vlm_spec("fetching-vlm"))
        uid = client.launch_model(model_name="fetching-vlm")
        fetched, usage = answer(server, uid, f"http://127.0.0.1:{site.server_address[1]}/photo.png")
        sent, _ = answer(server, uid, data_url(picture))
        assert fetched == sent and usage["prompt_tokens_details"]["image_tokens"] == 16
        refused = chat(server, uid, asking("http://127.0.0.1:9/nothing-listens.png"))
        assert refused.status_code == 400 and "could not fetch from 127.0.0.1" in refused.json()["detail"]
        slow = f"http://127.0.0.1:{site.server_address[1]}/slow-head"

        def hold() -> None:  # (the client gives up; the server's fetch goes on to its limit)
            with pytest.raises(httpx.TimeoutException):
                httpx.post(f"{server.url}/v1/chat/completions", timeout=4, json={
                    "model": uid, "messages": asking(slow, slow), "max_tokens": 8})

        with ThreadPoolExecutor(3) as pool:
            held = [pool.submit(hold) for _ in range(3)]
            time.sleep(1.0)
            started = time.monotonic()
            assert answer(server, uid, data_url(picture))[0] == sent  # beside six slow fetches
            assert time.monotonic() - started < 3
            for waited in held:
                waited.result()
    finally:
        server.stop()
        site.shutdown()
