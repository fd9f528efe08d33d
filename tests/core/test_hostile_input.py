"""The core's defences against hostile specs and launches, without a server (the quick loop's share of
tests/server/test_hostile.py)."""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from pathlib import Path

import pytest

from xitui.core.chat_format.prompts import ChatTemplateError, compile_chat_template
from xitui.core.errors import LaunchError, SpecError
from xitui.core.machine import peers
from xitui.core.model_files import bounded_reads as bounded
from xitui.core.model_files.inspect.gguf_header import GGUFError, read_header
from xitui.core.specs.spec import parse_llm
from xitui.core.units import parse_duration
from xitui.server.runtime.launch_envs import check_envs


def test_launch_envs_pass_an_allow_list() -> None:
    assert check_envs({"CUDA_VISIBLE_DEVICES": "0", "XITUI_THREADS": "2"}) == {"CUDA_VISIBLE_DEVICES": "0",
                                                                              "XITUI_THREADS": "2"}
    assert check_envs({"MY_TOOL_FLAG": "1"}, extra={"MY_TOOL_FLAG"}) == {"MY_TOOL_FLAG": "1"}
    for name in ("PYTHONPATH", "LD_PRELOAD", "HOME", "PATH", "pythonstartup", "UNKNOWN"):
        with pytest.raises(LaunchError, match=name):
            # the config cannot open the refused ones either
            check_envs({name: "/tmp/x"}, extra={"PYTHONPATH", "LD_PRELOAD", "HOME", "PATH", "pythonstartup"})
    with pytest.raises(LaunchError, match="NUL"):
        check_envs({"HF_HOME": "a\0b"})
    with pytest.raises(LaunchError, match="object"):
        check_envs(["HF_HOME"])
    # xitui's numeric settings are numbers (a garbled XITUI_THREADS was a 500 from the estimate: schemathesis)
    assert check_envs({"XITUI_THREADS": "4", "XITUI_BATCH_WAIT_MS": "2.5"}) == {"XITUI_THREADS": "4",
                                                                              "XITUI_BATCH_WAIT_MS": "2.5"}
    for name, value in (("XITUI_THREADS", "\xa0\xf4\x1c*"), ("XITUI_THREADS", "0"), ("XITUI_THREADS", "1e9"),
                        ("XITUI_MAX_BATCH", "2.5"), ("XITUI_MAX_BATCH", "-1"), ("XITUI_BATCH_GAP_MS", "nan"),
                        ("XITUI_BATCH_WAIT_MS", "inf"), ("XITUI_BATCH_WAIT_MS", "")):
        with pytest.raises(LaunchError, match=f"envs.{name}: must be"):
            check_envs({name: value})


def test_small_files_are_regular_and_bounded(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "config.json")
    start = time.monotonic()
    assert bounded.read_json(tmp_path / "config.json") is None  # refused, never waited on
    assert time.monotonic() - start < 1
    os.symlink("/dev/zero", tmp_path / "zero.json")
    with pytest.raises(bounded.UnreadableFileError, match="not a regular file"):
        bounded.read_small(tmp_path / "zero.json", 1024)
    (tmp_path / "big.json").write_bytes(b" " * 2048)
    with pytest.raises(bounded.UnreadableFileError, match="larger"):
        bounded.read_small(tmp_path / "big.json", 1024)
    (tmp_path / "ok.json").write_text(json.dumps({"a": 1}))
    os.symlink(tmp_path / "ok.json", tmp_path / "link.json")  # model caches are symlinks: followed
    assert bounded.read_json(tmp_path / "link.json") == {"a": 1}


def test_a_gguf_header_announcing_more_than_its_file_holds_is_refused_at_once(tmp_path: Path) -> None:
    key = b"tokenizer.ggml.tokens"
    for count, words in ((2**62, "more than the file holds"), (100_000_000, "more than 16000000")):
        path = tmp_path / f"{count}.gguf"
        with open(path, "wb") as fh:
            fh.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
                     + struct.pack("<IIQ", 9, 8, count))
            fh.truncate(1 << 30)
        start = time.monotonic()
        with pytest.raises(GGUFError, match=words):
            read_header(path)
        assert time.monotonic() - start < 1
    os.mkfifo(tmp_path / "fifo.gguf")
    with pytest.raises(GGUFError, match="not a regular file"):
        read_header(tmp_path / "fifo.gguf")


def _spec(**extra: object) -> dict[str, object]:
    spec: dict[str, object] = {"version": 2, "model_name": "hostile", "model_ability": ["chat"],
                               "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": 1,
                                                "quantization": "q4_0", "model_uri": "/models",
                                                "model_file_name_template": "m-{quantization}.gguf"}]}
    spec.update(extra)
    return spec


@pytest.mark.parametrize("template", ["{quantization:>100000000}", "{quantization!r}.gguf",
                                      "{quantization[0]}.gguf", "{0}.gguf", "x" * 300])
def test_file_name_templates_take_the_placeholder_as_it_is(template: str) -> None:
    spec = _spec()
    spec["model_specs"][0]["model_file_name_template"] = template  # type: ignore[index]
    with pytest.raises(SpecError, match="model_file_name_template"):
        parse_llm(spec)


def test_chat_templates_are_capped_and_every_compile_error_is_one_line() -> None:
    with pytest.raises(ChatTemplateError, match="KiB"):
        compile_chat_template("{{ x }}" * 20_000)
    nested = "{% if true %}" * 400 + "x" + "{% endif %}" * 400
    with pytest.raises(ChatTemplateError) as caught:
        compile_chat_template(nested)
    assert "\n" not in str(caught.value)
    with pytest.raises(SpecError, match="chat_template"):
        parse_llm(_spec(chat_template=nested))


def test_durations_past_any_use_are_refused_or_mean_never() -> None:
    with pytest.raises(ValueError):
        parse_duration(10**400)
    assert parse_duration("99999999999d") is None  # longer than ten years: never


def test_the_owner_of_a_loopback_connection_is_known() -> None:
    if not peers.supported():
        pytest.skip("sockets' owners are read on Linux only")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    accepted, address = listener.accept()
    try:
        assert peers.peer_uid(address, accepted.getsockname()) == os.getuid()
        assert peers.listener_uid(listener.getsockname()[1]) == os.getuid()
        assert peers.peer_uid(("127.0.0.1", 1), accepted.getsockname()) is None
    finally:
        for sock in (client, accepted, listener):
            sock.close()


def test_spec_stop_lists_are_bounded() -> None:
    with pytest.raises(SpecError, match="stop: at most 64"):
        parse_llm(_spec(stop=[f"w{i}" for i in range(150_000)]))
    with pytest.raises(SpecError, match="stop: at most 64"):
        parse_llm(_spec(stop=["x" * 5000]))
    with pytest.raises(SpecError, match="stop_token_ids"):
        parse_llm(_spec(stop_token_ids=list(range(10_000))))
    assert parse_llm(_spec(stop=["<|im_end|>"], stop_token_ids=[2])).stop == ["<|im_end|>"]
