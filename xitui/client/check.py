"""`xitui check`: does a registered spec do what it promises? Each ability is tried live on the running model
(launched for the check when it is not running), one row each with a figure, and where it fails the likely
cause and the change to the spec that fixes it. Works against any server the client reaches; the context
check reads the model file's trained length where the file is on this machine."""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from xitui.client.client import Client, ClientError
from xitui.core.chat_format import tool_calls
from xitui.core.chat_format.markers import format_of

#: Role markers of the common chat formats: in an answer's text they mean the chat format is not the model's.
MARKERS = re.compile(r"<\|im_(?:start|end)\|>|<start_of_turn>|<end_of_turn>|\[/?INST\]|<<SYS>>|<\|start_header_id\|>"
                     r"|<\|eot_id\|>|^\s*(?:user|assistant|### (?:Human|Assistant|Instruction))\s*:", re.M)
#: How a model writes a call, by what its text starts or holds, and the tool_parser that reads it.
CALL_SYNTAX = (("<tool_call>", "hermes"), ("[TOOL_CALLS]", "mistral"), ("<start_function_call>", "gemma"),
               ("<|python_tag|>", "llama3"))
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "required": ["city"], "additionalProperties": False,
                   "properties": {"city": {"type": "string", "maxLength": 60}}}}}
CITY = {"type": "object", "required": ["city", "country"], "additionalProperties": False,
        "properties": {"city": {"type": "string", "maxLength": 40}, "country": {"type": "string", "maxLength": 40}}}
TRIES = 3
#: The rows a check of each model type can print, in order (`--only` picks among them).
ROWS = {"LLM": ("chat format", "generate", "tools", "reasoning", "vision", "json_schema", "context length"),
        "embedding": ("dimensions", "similarity"), "rerank": ("ranking",)}


@dataclass
class Row:
    """One thing a spec promises, tried: ok, warn, fail or skip; a figure; the likely cause and its fix."""

    name: str
    status: str
    figure: str
    cause: str = ""
    fix: dict[str, Any] = field(default_factory=dict)

    @property
    def fix_text(self) -> str:
        """The fix as `field=value` pairs ("-" for none), as the CLI, the dashboard and the wizard show it."""
        return fix_text(self.fix)


def fix_text(fixes: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in fixes.items()) or "-"


@dataclass
class Report:
    """A check's rows, how long it took, and whether the model was launched for it."""

    model_name: str
    model_type: str
    rows: list[Row]
    seconds: float
    launched: bool

    def as_dict(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "model_type": self.model_type, "seconds": round(self.seconds, 1),
                "launched_for_the_check": self.launched, "rows": [asdict(r) for r in self.rows]}

    @property
    def fixes(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for row in self.rows:
            merged.update(row.fix)
        return merged

    @property
    def passed(self) -> bool:
        return all(r.status in ("ok", "skip", "warn") for r in self.rows)

    @property
    def summary(self) -> str:
        """"3/4 ok in 12 s (launched for the check)"."""
        ok = sum(r.status == "ok" for r in self.rows)
        return f"{ok}/{len(self.rows)} ok in {self.seconds:.0f} s" + (" (launched for the check)" if self.launched
                                                                      else "")


def check(client: Client, name: str, model_type: str, said: Callable[[str], None] = lambda _: None,
          only: Iterable[str] = ()) -> Report:
    """Try each thing the registration `name` promises on a running model of it (of those rows named in
    `only`, when given: a fix re-tried without the rest)."""
    from xitui.core.errors import XituiError

    wanted = set(only)
    known = ROWS.get(model_type, ())
    if wanted - set(known):
        raise XituiError(f"no such row in a check of {model_type} models: {', '.join(sorted(wanted - set(known)))}"
                         f" (its rows: {', '.join(known)})")
    start = time.monotonic()
    registration = client.get_model_registration(model_type, name)
    running = {uid: d for uid, d in client.list_models().items() if d.get("model_name") == name}
    uid = next(iter(running), None)
    launched = uid is None
    rows: list[Row] = []
    if launched:
        said(f"launching {name} for the check")
        request: dict[str, Any] = {"model_name": name, "model_type": model_type, "model_uid": f"check-{name}"[:100]}
        trained = trained_context(registration) if model_type == "LLM" else None
        declared = registration.get("context_length")
        if trained and isinstance(declared, int) and declared > trained:
            request["context_length"] = trained  # (the declared length may not even fit in memory)
        try:
            uid = client.launch_model(**request)
        except ClientError as exc:
            return Report(name, model_type, [Row("launch", "fail", "", str(exc))], time.monotonic() - start, True)
    assert uid is not None
    try:
        described: dict[str, Any] = dict(client.describe_model(uid))
        if model_type == "LLM":
            rows = _llm_rows(client, uid, registration, described, said, wanted or set(known))
        elif model_type == "embedding":
            rows = _embedding_rows(client, uid, registration)
        else:
            rows = _rerank_rows(client, uid)
        rows = [r for r in rows if not wanted or r.name in wanted]
    finally:
        if launched:
            client.terminate_model(uid)
    return Report(name, model_type, rows, time.monotonic() - start, launched)


def _gguf_header(registration: dict[str, Any]) -> Any:
    """The GGUF header of the registration's file, where it is on this machine (else None)."""
    from pathlib import Path

    from xitui.core.specs.spec import local_path

    for spec in registration.get("model_specs") or []:
        if not spec.get("model_uri") or spec.get("model_format") != "ggufv2":
            continue
        path = Path(local_path(spec["model_uri"]))
        if path.is_dir() and spec.get("model_file_name_template"):
            path = path / spec["model_file_name_template"].format(quantization=spec.get("quantization"))
        try:
            from xitui.core.model_files.inspect.gguf_header import read_header

            return read_header(path, token_ids=())
        except Exception:  # not readable here: the check says nothing of it
            return None
    return None


def trained_context(registration: dict[str, Any]) -> int | None:
    """The context length the model's file says it was trained for, where the file is on this machine."""
    from pathlib import Path

    from xitui.core.specs.spec import local_path

    header = _gguf_header(registration)
    if header is not None:
        value = header.arch("context_length")
        return value if isinstance(value, int) and value > 0 else None
    for spec in registration.get("model_specs") or []:
        uri = spec.get("model_uri")
        if not uri:
            continue
        path = Path(local_path(uri))
        if spec.get("model_format") == "pytorch" and (path / "config.json").is_file():
            from xitui.core.model_files.bounded_reads import read_json

            config = read_json(path / "config.json") or {}
            value = (config.get("text_config") or config).get("max_position_embeddings")
            return value if isinstance(value, int) and value > 0 else None
    return None


# --- LLMs ------------------------------------------------------------------------------------------------


def _llm_rows(client: Client, uid: str, registration: dict[str, Any], described: dict[str, Any],
              said: Callable[[str], None], wanted: set[str]) -> list[Row]:
    abilities = registration.get("model_ability") or []
    steps: list[tuple[str, bool, Callable[[], Row]]] = [
        ("chat format", "chat" in abilities, lambda: _chat_format(client, uid, registration, described)),
        ("generate", "chat" not in abilities, lambda: _generates(client, uid)),
        ("tools", "tools" in abilities, lambda: _tools(client, uid, registration)),
        ("reasoning", "reasoning" in abilities, lambda: _reasoning(client, uid, registration)),
        ("vision", "vision" in abilities and "chat" in abilities, lambda: _vision(client, uid)),
        ("json_schema", True, lambda: _json_schema(client, uid, "chat" in abilities)),
        ("context length", True, lambda: _context(client, uid, registration, described)),
    ]
    rows = []
    for name, promised, run in steps:
        if promised and name in wanted:
            said(f"checking {name}")
            rows.append(run())
    return rows


def _post(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return client.transport.post_json(path, body)


def _chat(client: Client, uid: str, content: str, **extra: Any) -> dict[str, Any]:
    return _post(client, "/v1/chat/completions", {"model": uid, "messages": [{"role": "user", "content": content}],
                                                   "temperature": 0, **extra})


def _own_format_fix(registration: dict[str, Any]) -> dict[str, Any]:
    """Leave the chat format to the model's own template, where the spec sets one of its own."""
    if registration.get("prompt_style") or registration.get("chat_template"):
        return {"prompt_style": None, "chat_template": None}
    return {}


def _style_against_template(registration: dict[str, Any]) -> tuple[str, str] | None:
    """(the spec's style's format, the model template's) where the spec sets a prompt style whose markers are
    another format than the model's own template's."""
    from xitui.core.chat_format.prompts import SAMPLE_CONVERSATION, PromptStyle, get_style, render_prompt

    raw = registration.get("prompt_style")
    style = get_style(raw) if isinstance(raw, str) else PromptStyle(**raw) if isinstance(raw, dict) else None
    header = _gguf_header(registration)
    own = header.get("tokenizer.chat_template") if header else None
    if style is None or not own:
        return None
    written, trained = format_of(render_prompt(style, SAMPLE_CONVERSATION)), format_of(own)
    return (written or style.style_name, trained) if trained and written != trained else None


def _chat_format(client: Client, uid: str, registration: dict[str, Any], described: dict[str, Any]) -> Row:
    mismatch = _style_against_template(registration)
    answer = _chat(client, uid, "Name three colours, then stop.", max_tokens=96)
    choice = answer["choices"][0]
    text = choice["message"].get("content") or ""
    finish = choice.get("finish_reason")
    tokens = answer.get("usage", {}).get("completion_tokens", 0)
    leaked = sorted(set(MARKERS.findall(text)))
    figure = f"{tokens} tokens, ended on {'its stop token' if finish == 'stop' else finish}"
    fix = _own_format_fix(registration)
    how = described.get("chat_format") or "?"
    if mismatch:
        return Row("chat format", "fail", figure, f"the spec's prompt style writes {mismatch[0]}, the model's own "
                                                  f"template (what it was trained on) {mismatch[1]}", fix)
    if leaked:
        return Row("chat format", "fail", figure + f"; role markers in the text: {', '.join(leaked)[:60]}",
                   f"the chat format ({how}) is not the one the model was trained on"
                   + ("; the model's own template fixes it" if fix else ""), fix)
    if finish != "stop":
        return Row("chat format", "fail", figure,
                   f"the answer ran to max_tokens: the chat format ({how}) does not end the model's turn, or its "
                   "end token is not a stop word" + ("; the model's own template fixes it" if fix else ""), fix)
    return Row("chat format", "ok", figure + f" ({how})")


def _generates(client: Client, uid: str) -> Row:
    out = _post(client, "/v1/completions", {"model": uid, "prompt": "The capital of France is", "max_tokens": 8,
                                            "temperature": 0})
    text = out["choices"][0]["text"]
    return Row("generate", "ok" if text.strip() else "fail", f"{len(text)} characters for 8 tokens",
               "" if text.strip() else "the model wrote nothing: its end token comes at once")


def _tools(client: Client, uid: str, registration: dict[str, Any]) -> Row:
    question = "What is the weather in Paris? Use the get_weather tool."
    valid = 0
    for _ in range(TRIES):
        answer = _chat(client, uid, question, tools=[WEATHER], max_tokens=64,
                       tool_choice={"type": "function", "function": {"name": "get_weather"}})
        calls = answer["choices"][0]["message"].get("tool_calls") or []
        valid += bool(calls) and _valid_city(calls[0]["function"].get("arguments"))
    auto = _chat(client, uid, question, tools=[WEATHER], max_tokens=96)
    message = auto["choices"][0]["message"]
    figure = f"forced {valid}/{TRIES} valid; auto: {'a call' if message.get('tool_calls') else 'text'}"
    if valid < TRIES:
        return Row("tools", "fail", figure, "forced calls did not hold to the tool's schema", {})
    # the template in use tells the model a syntax: the parser must read that one
    header = _gguf_header(registration)
    template = registration.get("chat_template") or (header.get("tokenizer.chat_template") if header else None)
    declared = registration.get("tool_parser")
    taught = next((parser for marker, parser in CALL_SYNTAX if template and marker in template), None)
    if declared and taught and tool_calls.PARSERS.get(declared.lower()) != tool_calls.PARSERS.get(taught):
        return Row("tools", "fail", figure, f"the chat template teaches {taught}'s call syntax, the spec's tool_parser "
                                            f"reads {declared}'s", {"tool_parser": taught})
    text = message.get("content") or ""
    written = next((parser for marker, parser in CALL_SYNTAX if marker in text), None)
    if not message.get("tool_calls") and written:
        now = registration.get("tool_parser") or "read from the template"
        return Row("tools", "fail", figure, f"the model wrote a call in {written}'s syntax that the tool parser "
                                            f"({now}) did not read", {"tool_parser": written})
    return Row("tools", "ok", figure)


def _vision(client: Client, uid: str) -> Row:
    """The images reach the model: two pictures get two answers, and the answer with one is not the answer
    without (a model whose projector is missing, or not its own, answers as if blind)."""
    question = "Describe the picture in one sentence."

    def seen(picture: bytes | None) -> str:
        parts: list[dict[str, Any]] = [{"type": "text", "text": question}]
        if picture is not None:
            url = "data:image/png;base64," + base64.b64encode(picture).decode()
            parts.append({"type": "image_url", "image_url": {"url": url}})
        answer = _post(client, "/v1/chat/completions", {"model": uid, "messages": [{"role": "user", "content": parts}],
                                                         "max_tokens": 24, "temperature": 0})
        return answer["choices"][0]["message"].get("content") or ""

    try:
        red, stripes, blind = seen(_picture("red")), seen(_picture("stripes")), seen(None)
    except ClientError as exc:
        return Row("vision", "fail", "no answer to an image", str(exc)[:200])
    if red != stripes:
        return Row("vision", "ok", "two pictures, two answers")
    if red != blind:
        return Row("vision", "ok", "a picture changes the answer (both pictures got the same one)")
    return Row("vision", "fail", "the same answer with either picture and with none",
               "the images do not reach the model: its projector (multimodal_projectors) is missing or not this "
               "model's")


def _picture(kind: str) -> bytes:
    """A small PNG: a red square, or black and white stripes."""
    import io

    from PIL import Image

    image = Image.new("RGB", (224, 224), (220, 30, 30))
    if kind == "stripes":
        for x in range(0, 224, 32):
            image.paste((255, 255, 255), (x, 0, x + 16, 224))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _valid_city(arguments: object) -> bool:
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        return False
    return isinstance(args, dict) and set(args) == {"city"} and isinstance(args["city"], str) and bool(args["city"])


def _reasoning(client: Client, uid: str, registration: dict[str, Any]) -> Row:
    answer = _chat(client, uid, "What is 17 + 25? Think first.", max_tokens=256)
    message = answer["choices"][0]["message"]
    thought, text = message.get("reasoning_content") or "", message.get("content") or ""
    end = registration.get("reasoning_end_tag") or "</think>"
    figure = f"{len(thought)} characters of reasoning, {len(text)} of answer"
    if not thought or end in text:
        return Row("reasoning", "fail", figure, f"the reasoning did not come apart from the answer: the model's "
                                                f"tags are not {registration.get('reasoning_start_tag') or '<think>'}"
                                                f"...{end}")
    return Row("reasoning", "ok", figure)


def _json_schema(client: Client, uid: str, chat: bool) -> Row:
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}}
    valid = 0
    for _ in range(TRIES):
        if chat:
            out = _chat(client, uid, "Name a big city and its country, as JSON.", max_tokens=64, response_format=fmt)
            text = out["choices"][0]["message"].get("content") or ""
        else:
            out = _post(client, "/v1/completions", {"model": uid, "prompt": "A big city, as JSON:", "max_tokens": 64,
                                                    "temperature": 0, "response_format": fmt})
            text = out["choices"][0]["text"]
        try:
            data = json.loads(text)
        except ValueError:
            continue
        valid += isinstance(data, dict) and set(data) == {"city", "country"}
    return Row("json_schema", "ok" if valid == TRIES else "fail", f"{valid}/{TRIES} valid",
               "" if valid == TRIES else "answers held to a schema did not parse")


def _context(client: Client, uid: str, registration: dict[str, Any], described: dict[str, Any]) -> Row:
    declared = registration.get("context_length")
    launched = described.get("context_length") or declared or 2048
    trained = trained_context(registration)
    if trained and isinstance(declared, int) and declared > trained:
        return Row("context length", "fail", f"declared {declared}, the file says {trained}",
                   f"the spec declares more context than the model was trained for ({trained})",
                   {"context_length": trained})
    # a prompt that fills most of the context the model runs with, answered
    words = max(16, int(launched * 0.8))
    text = "one two three four " * (words // 4)
    try:
        if "generate" in (registration.get("model_ability") or []):
            out = _post(client, "/v1/completions", {"model": uid, "prompt": text, "max_tokens": 4, "temperature": 0})
        else:
            out = _chat(client, uid, text, max_tokens=4)
    except ClientError as exc:
        return Row("context length", "fail", f"{words} words of {launched} tokens", str(exc)[:200])
    used = out.get("usage", {}).get("prompt_tokens", 0)
    note = f"; the file says {trained}" if trained else ""
    return Row("context length", "ok", f"a {used}-token prompt answered (context {launched}{note})")


# --- embedding and rerank models ----------------------------------------------------------------------


def _embedding_rows(client: Client, uid: str, registration: dict[str, Any]) -> list[Row]:
    texts = ["The cat sat on the mat.", "A kitten rested on the rug.", "Quarterly revenue grew by 4%."]
    data = _post(client, "/v1/embeddings", {"model": uid, "input": texts})["data"]
    vectors = [item["embedding"] for item in data]
    declared = registration.get("dimensions")
    width = len(vectors[0])
    rows = [Row("dimensions", "ok", f"{width}") if width == declared else
            Row("dimensions", "fail", f"{width}, the spec says {declared}", "the spec's dimensions are not the model's",
                {"dimensions": width})]
    similar, unrelated = _cosine(vectors[0], vectors[1]), _cosine(vectors[0], vectors[2])
    rows.append(Row("similarity", "ok" if similar > unrelated else "fail",
                    f"similar {similar:.3f} > unrelated {unrelated:.3f}" if similar > unrelated else
                    f"similar {similar:.3f}, unrelated {unrelated:.3f}",
                    "" if similar > unrelated else "similar texts do not score higher: not a sentence embedding "
                                                   "model, or the wrong pooling"))
    return rows


def _rerank_rows(client: Client, uid: str) -> list[Row]:
    documents = ["The Eiffel Tower is in Paris.", "Bread is made of flour, water and yeast.",
                 "Paris is the capital of France, on the Seine."]
    out = _post(client, "/v1/rerank", {"model": uid, "query": "What is the capital of France?",
                                       "documents": documents})
    place = 1 + [r["index"] for r in out["results"]].index(2)
    return [Row("ranking", "ok" if place == 1 else "fail", f"the relevant passage ranked {place} of 3",
                "" if place == 1 else "the relevant passage does not come first: not a cross-encoder?")]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    return dot / (math.sqrt(sum(x * x for x in a) * sum(y * y for y in b)) or 1.0)


def fixed_spec(registration: dict[str, Any], fixes: dict[str, Any]) -> dict[str, Any]:
    """The registration with the fixes applied (None removes a field), ready to register again."""
    spec = {k: v for k, v in registration.items() if k not in ("is_builtin", "persisted")}
    for key, value in fixes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def register_fixed(client: Client, model_type: str, name: str, fixes: dict[str, Any],
                   base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Register the corrected spec of `name` (the fixes over `base`, by default its registration) in place of
    the current one, persisted as it was; the current one is put back when the corrected one is refused.
    Returns the spec registered."""
    from xitui.core.errors import XituiError

    registration = client.get_model_registration(model_type, name)
    if registration.get("is_builtin"):
        raise XituiError(f"{name} is builtin: register a copy under another name to change it")
    spec = fixed_spec(base if base is not None else registration, fixes)
    persisted = bool(registration.get("persisted", True))
    client.unregister_model(model_type, name)
    try:
        client.register_model(model_type, json.dumps(spec), persist=persisted)
    except Exception:
        client.register_model(model_type, json.dumps(fixed_spec(registration, {})), persist=persisted)
        raise
    return spec
