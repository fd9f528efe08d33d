"""Tool calling, the parts that are plain text: how a model is told about tools when its chat template does
not take them, how it writes a call in each format, the schema a forced call must follow, and reading the
calls back out of the answer as it streams.

Formats (a spec's `tool_parser` names one, Xinference's names included; else it is read from the chat
template):

- `hermes` (Qwen 2.5/3, Hermes, SmolLM2, and the default): `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`
- `mistral`: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`
- `llama3`: the answer is one JSON object `{"name": ..., "parameters": {...}}`
- `functiongemma`, `gemma` (Gemma 4): `<start_function_call>call:NAME{key:<escape>text<escape>}<end_function_call>`
  and `<|tool_call>call:NAME{...}<tool_call|>`, not JSON (core/chat_format/gemma_calls.py)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from xitui.core.chat_format import gemma_calls, strict_json
from xitui.core.chat_format.json_schema import DATA
from xitui.core.chat_format.stop_words import partial_marker
from xitui.core.errors import XituiError

if TYPE_CHECKING:  # annotations only: the CLI does not import the wire's types to start
    from xitui import wire

_T = TypeVar("_T", bound=Mapping[str, Any])

#: Xinference's tool_parser names, and xitui's, to the format they write.
PARSERS = {"hermes": "hermes", "qwen": "hermes", "glm4": "hermes", "minicpm5": "hermes",
           "llama3": "llama3", "mistral": "mistral", "gemma": "gemma", "functiongemma": "functiongemma"}
FORMATS = ("hermes", "mistral", "llama3", "gemma", "functiongemma")
#: Xinference 4's other tool parsers: a spec may name them (it registers, and a real Xinference cluster runs
#: it); xitui does not read their syntax yet, so a request with tools to such a model is refused.
UNREAD_PARSERS = frozenset({"deepseek-r1", "deepseek_v3", "deepseek-v3.1", "deepseek-v3.2", "deepseek-v4",
                            "deepseek-v4.1", "glm5", "kimi-k3", "minimax", "minimax_m3"})
#: Where a call starts and ends in the answer, per format (llama3's is the whole answer).
MARKERS = {"hermes": ("<tool_call>", "</tool_call>"), "mistral": ("[TOOL_CALLS]", None), "llama3": ("{", None),
           **{fmt: tokens[:2] for fmt, tokens in gemma_calls.TOKENS.items()}}


def detect(template: str | None, parser: str | None = None) -> str:
    """The format a model writes calls in: the spec's `tool_parser`, else what its template shows."""
    if parser:
        if parser.lower() in UNREAD_PARSERS:
            raise XituiError(f"tools: xitui does not read {parser!r} tool calls yet (the spec's tool_parser; "
                             f"it reads: {', '.join(sorted(PARSERS))}): send the request without tools")
        return PARSERS.get(parser.lower(), "hermes")
    text = template or ""
    for fmt, (start, _, _) in gemma_calls.TOKENS.items():
        if start in text:
            return fmt
    if "[TOOL_CALLS]" in text:
        return "mistral"
    if "<|python_tag|>" in text or ("<|start_header_id|>" in text and "tools" in text):
        return "llama3"
    return "hermes"


def template_takes_tools(template: str | None) -> bool:
    """Whether a Jinja chat template renders the tools it is given (else they go in the system prompt)."""
    return bool(template) and "tools" in template  # type: ignore[operator]


# --- the prompt ---------------------------------------------------------------------------------------

def tools_prompt(tools: Sequence[Mapping[str, Any]], fmt: str) -> str:
    """What a model whose template does not take tools reads about them, at the end of the system prompt."""
    listed = "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)
    if fmt == "mistral":
        how = 'reply with [TOOL_CALLS] and a JSON list: [TOOL_CALLS][{"name": "<name>", "arguments": {...}}]'
    elif fmt == "llama3":
        how = 'reply with only a JSON object: {"name": "<name>", "parameters": {...}}'
    elif fmt in gemma_calls.TOKENS:
        example = gemma_calls.write_call("<name>", {"<argument>": "text", "<count>": 2}, fmt)
        how = f"reply with one call per function, strings between {gemma_calls.TOKENS[fmt][2]}:\n{example}"
    else:
        how = ('reply with one <tool_call></tool_call> block per call:\n<tool_call>\n'
               '{"name": "<name>", "arguments": {...}}\n</tool_call>')
    return ("You can call these functions (JSON schemas of their arguments):\n" + listed
            + f"\nTo call one, {how}\nOtherwise answer normally.")


def call_text(call: Mapping[str, Any], fmt: str) -> str:
    """An assistant's earlier call, written back the way the model writes calls."""
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        args = strict_json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        args = arguments
    if fmt == "llama3":
        return json.dumps({"name": function.get("name"), "parameters": args}, ensure_ascii=False)
    if fmt in gemma_calls.TOKENS:
        return gemma_calls.write_call(str(function.get("name")), args, fmt)
    body = json.dumps({"name": function.get("name"), "arguments": args}, ensure_ascii=False)
    return f"[TOOL_CALLS][{body}]" if fmt == "mistral" else f"<tool_call>\n{body}\n</tool_call>"


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A conversation for a template that renders tools: calls' arguments as objects, as Hugging Face's
    chat templates read them (OpenAI sends them as JSON text)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            parsed = []
            for call in calls:
                function = dict(call.get("function") or {})
                with contextlib.suppress(TypeError, ValueError):  # not JSON: the template gets the text as it came
                    function["arguments"] = strict_json.loads(function.get("arguments") or "{}")
                parsed.append({**call, "function": function})
            out.append({**message, "tool_calls": parsed})
        else:
            out.append(dict(message))
    return out


def plain_messages(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None,
                   fmt: str) -> list[dict[str, Any]]:
    """A conversation with tools, for a chat format that knows only system, user and assistant text: the
    tools at the end of the system prompt, earlier calls as the assistant wrote them, results as user turns."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            result = f"<tool_response>\n{message.get('content') or ''}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("_results"):
                out[-1]["content"] += "\n" + result
            else:
                out.append({"role": "user", "content": result, "_results": True})
        elif role == "assistant" and message.get("tool_calls"):
            calls = "\n".join(call_text(c, fmt) for c in message["tool_calls"])
            out.append({"role": "assistant", "content": ((message.get("content") or "") + "\n" + calls).strip()})
        else:
            out.append({"role": role, "content": message.get("content") or ""})
    for message in out:
        message.pop("_results", None)
    if tools:
        text = tools_prompt(tools, fmt)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{text}"}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


# --- forcing a call ------------------------------------------------------------------------------------

def chosen_tools(tools: Sequence[_T], choice: Any) -> Sequence[_T] | None:
    """The tools a call must be one of (`required`: any; a named function: that one); None: no call forced."""
    if choice in (None, "auto", "none"):
        return None
    if choice == "required":
        return tools
    name = ((choice or {}).get("function") or {}).get("name") if isinstance(choice, dict) else None
    found = [t for t in tools if (t.get("function") or {}).get("name") == name]
    if not found:
        raise XituiError(f"tool_choice: no tool named {name!r} among the request's tools")
    return found


def call_schema(tools: Sequence[Mapping[str, Any]], fmt: str) -> dict[str, Any]:
    """The JSON schema of one call to one of `tools`, as the format writes it. Each tool's parameters sit
    inside the call's schema, so their definitions (`$defs`, `definitions`: pydantic writes them for a nested
    model or an Enum) move to the call's root and their references follow (_hoisted)."""
    key = "parameters" if fmt == "llama3" else "arguments"
    options = []
    defs: dict[str, Any] = {}
    for i, tool in enumerate(tools):
        function = tool.get("function") or {}
        params = function.get("parameters") or {"type": "object"}
        at = f"#/properties/{key}" if len(tools) == 1 else f"#/anyOf/{i}/properties/{key}"
        params = _hoisted(params, at, f"t{i}.", defs)
        options.append({"type": "object", "additionalProperties": False, "required": ["name", key],
                        "properties": {"name": {"const": function.get("name")}, key: params}})
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "$defs": defs} if defs else schema


def _hoisted(params: Any, at: str, prefix: str, defs: dict[str, Any]) -> Any:
    """`params` (a schema that will sit at the JSON pointer `at` of another) without its definitions, which go
    into `defs` under `prefix` + their name; every local reference rewritten for where things now are: to a
    definition, its new name; to the parameters' root (`#`) or into them (`#/properties/...`), under `at`."""
    if not isinstance(params, dict):
        return params
    names: dict[str, str] = {}  # reference -> its new name in `defs`
    sections = [(section, params[section]) for section in ("$defs", "definitions")
                if isinstance(params.get(section), dict)]
    for section, found in sections:
        for name in found:
            taken = prefix + name in defs or prefix + name in names.values()
            new = f"{prefix}{section}.{name}" if taken else prefix + name
            names[f"#/{section}/{_pointer(name)}"] = new

    def moved(ref: str) -> str:
        for old, new in names.items():
            if ref == old or ref.startswith(old + "/"):
                return f"#/$defs/{_pointer(new)}" + ref[len(old):]
        return at + ref[1:] if ref == "#" or ref.startswith("#/") else ref

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        return {k: (moved(v) if k == "$ref" and isinstance(v, str) else v if k in DATA else walk(v))
                for k, v in node.items()}

    for section, found in sections:
        for name, sub in found.items():
            defs[names[f"#/{section}/{_pointer(name)}"]] = walk(sub)
    return walk({k: v for k, v in params.items() if not (k in ("$defs", "definitions") and isinstance(v, dict))})


def _pointer(name: str) -> str:
    """A name as one token of a JSON pointer (RFC 6901: ~ and / escaped)."""
    return name.replace("~", "~0").replace("/", "~1")


def own_grammar(schema: dict[str, Any], fmt: str, several: bool) -> str | None:
    """The GBNF of a forced answer for a format whose calls are not JSON (the others use the engine's JSON
    schema converter through `call_grammar`/`call_lark`); None for a JSON format."""
    return gemma_calls.call_grammar(schema, fmt, several) if fmt in gemma_calls.TOKENS else None


def call_grammar(call_gbnf: str, fmt: str, several: bool) -> str:
    """A GBNF grammar for a forced answer: one call (or, with `several`, one or more) in the format's
    markers around `call_gbnf`, the grammar of one call's JSON (its root rule becomes `call`)."""
    renamed = "\n".join(("call ::=" + line[len("root ::="):]) if line.startswith("root ::=") else line
                        for line in call_gbnf.splitlines())
    return _forced("root ::=", fmt, several, '"," space') + "\n" + renamed


def call_lark(schema: dict[str, Any], fmt: str, several: bool) -> str:
    """The same forced answer as `call_grammar`, in llguidance's Lark (its `%json` takes the call's schema)."""
    return _forced("start:", fmt, several, '","') + "\ncall: %json " + json.dumps(schema)


#: The text that opens a call, by format, where there is one: an `auto` answer is free until the model writes
#: it, then held to the tools' schemas to the call's end (as llama.cpp's lazy grammars are triggered).
TRIGGERS = {"hermes": "<tool_call>", "mistral": "[TOOL_CALLS]"}


def after_trigger_lark(schema: dict[str, Any], fmt: str) -> str:
    """In llguidance's Lark, what may follow a call's opening marker (TRIGGERS) in an `auto` answer: the call
    (several, where the format lists them) and its closing marker; nothing after, the answer is free again."""
    if fmt == "mistral":
        head = 'start: WS? "[" WS? call (WS? "," WS? call)* WS? "]"'
    else:
        head = 'start: WS? call WS? "</tool_call>"'
    return f"{head}\nWS: /[ \\t\\n]+/\ncall: %json {json.dumps(schema)}"


def _forced(head: str, fmt: str, several: bool, comma: str) -> str:
    """The first rule of a forced answer (GBNF and Lark share this much): the calls in the format's markers."""
    if fmt == "mistral":
        return f'{head} "[TOOL_CALLS][" call ({comma} call)* "]"' if several else f'{head} "[TOOL_CALLS][" call "]"'
    if fmt == "llama3":
        return f"{head} call"
    one = '"<tool_call>\\n" call "\\n</tool_call>"'
    return f'{head} {one} ("\\n" {one})*' if several else f"{head} {one}"


# --- reading calls back --------------------------------------------------------------------------------

@dataclass
class CallReader:
    """Splits an answer as it streams into text for `content` and the calls it makes. Text that may be the
    start of a call's marker is held back until it is clear which it is.

    A call is given as one only when a client can act on it: a function the request offered (`offered`;
    None: any name), arguments that are a JSON object every parser reads (no NaN or Infinity, at most
    strict_json.MAX_DEPTH levels deep). Anything else between a call's markers stays in the text as the
    model wrote it, markers included, whether the answer streams or not."""

    fmt: str
    offered: frozenset[str] | None = None
    calls: list[wire.ToolCall] = field(default_factory=list)
    #: An end marker inside a string of a call's JSON is part of the call (a grammar allows a name of
    #: `}}</tool_call> <tool_call>...`: bench/tool_calls.py met one in 600 forced calls).
    strings: bool = True
    #: Text after the answer's last piece that may be the start of a call's marker.
    _held: str = ""
    _in_call: bool = False
    _started: bool = False
    #: The call being read, in the pieces it came in (joined once, when its end marker comes: a long call
    #: streamed a token at a time costs its length, not its length squared), and the last characters of it
    #: that may begin the end marker.
    _body: list[str] = field(default_factory=list)
    _tail: str = ""
    #: Where the call's text stands as JSON, read one character at a time as it comes (once each): whether it
    #: is JSON (None: only white space so far), in a string, after a backslash in one; and whether an end
    #: marker was taken as part of a string.
    _json: bool | None = None
    _in_string: bool = False
    _escaped: bool = False
    _absorbed: bool = False

    def feed(self, text: str) -> tuple[str, list[wire.ToolCall]]:
        """The content safe to show now, and the calls completed by this text."""
        start, end = MARKERS[self.fmt]
        if self.fmt == "llama3":  # a call is the whole answer: decide on its first visible character
            if not self._started:
                text, self._held = self._held + text, ""
                if not text.strip():
                    self._held = text
                    return "", []
                self._started = True
                self._in_call = text.lstrip().startswith("{")
            if self._in_call:
                self._body.append(text)
                return "", []
            return text, []
        shown = ""
        found: list[wire.ToolCall] = []
        buf = text
        while True:
            if not self._in_call:
                buf, self._held = self._held + buf, ""
                at = buf.find(start)
                if at < 0:
                    keep = partial_marker(buf, start)
                    shown += buf[:len(buf) - keep]
                    self._held = buf[len(buf) - keep:]
                    return shown, found
                shown += buf[:at]
                buf = buf[at + len(start):]
                self._in_call, self._body, self._tail = True, [], ""
                self._json, self._in_string, self._escaped, self._absorbed = None, False, False, False
            if end is None:  # mistral: the rest of the answer is the list of calls
                self._body.append(buf)
                return shown, found
            probe = self._tail + buf
            at = probe.find(end)
            if at < 0:
                self._body.append(buf)
                self._scan(buf)
                self._tail = probe[max(0, len(probe) - len(end) + 1):]
                return shown, found
            cut = at - len(self._tail)  # where the end marker starts in `buf` (before it: in the body so far)
            self._scan(buf[:max(cut, 0)])  # (a marker holds no quote nor backslash: it changes no state)
            if self._in_string:  # part of a string of the call's JSON: read on
                self._body.append(buf[:cut + len(end)])
                self._absorbed, self._tail = True, ""
                buf = buf[cut + len(end):]
                continue
            body = "".join(self._body)
            inner = body[:len(body) + cut] if cut < 0 else body + buf[:cut]
            buf = buf[cut + len(end):]
            self._in_call, self._body, self._tail = False, [], ""
            calls = self._calls_in(inner)
            if calls is None and self._absorbed:  # a stray quote, not a string: read it again marker by marker
                text, calls_again = self._read_plainly(start + inner + end)
                shown += text
                found += calls_again
            elif calls is None:  # not a call a client can act on: the model's text, as it wrote it
                shown += start + inner + end
            else:
                found += calls

    def finish(self) -> tuple[str, list[wire.ToolCall]]:
        """The end of the answer: what was held back, as calls or as text."""
        rest, self._held = self._held, ""
        if not self._in_call:
            return rest, []
        body, self._body, self._in_call = "".join(self._body), [], False
        calls = self._calls_in(body)
        if calls:
            return "", calls
        start, _ = MARKERS[self.fmt]
        if self._absorbed:
            return self._read_plainly(start + body)
        return ("" if self.fmt == "llama3" else start) + body, []  # not a call after all: give it as text

    def _scan(self, text: str) -> None:
        """Follow the call's JSON strings through `text` (new characters only: linear in the call's length)."""
        if not self.strings or self._json is False:
            return
        in_string, escaped = self._in_string, self._escaped
        for ch in text:
            if self._json is None:
                if ch.isspace():
                    continue
                self._json = ch in "{["
                if not self._json:
                    return
            if escaped:
                escaped = False
            elif in_string:
                if ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
        self._in_string, self._escaped = in_string, escaped

    def _read_plainly(self, text: str) -> tuple[str, list[wire.ToolCall]]:
        """`text` read again with each end marker ending its call (a quote the model left open took them)."""
        again = CallReader(self.fmt, self.offered, strings=False)
        shown, calls = again.feed(text)
        rest, more = again.finish()
        self.calls += calls + more
        return shown + rest, calls + more

    def _calls_in(self, text: str) -> list[wire.ToolCall] | None:
        """The calls in the text between a call's markers; None when any of it is not a call to give."""
        import uuid  # deferred: core/specs/spec.py imports this module on every CLI command that reads a spec

        if self.fmt in gemma_calls.TOKENS:
            call = gemma_calls.read_call(text, self.fmt)
            items: list[Any] = [{"name": call[0], "arguments": call[1]}] if call else []
        else:
            try:
                data = strict_json.loads(text.strip())
            except (ValueError, RecursionError):
                return None
            items = data if isinstance(data, list) else [data]
        found: list[wire.ToolCall] = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                return None
            if self.offered is not None and item["name"] not in self.offered:
                return None
            args = item.get("arguments", item.get("parameters"))
            if args is None:  # a function of no arguments
                args = {}
            elif isinstance(args, str):  # some models write the arguments as JSON text
                try:
                    args = strict_json.loads(args)
                except (ValueError, RecursionError):
                    return None
            if not isinstance(args, dict):
                return None
            found.append({"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                          "function": {"name": item["name"], "arguments": json.dumps(args, allow_nan=False)}})
        if not found:
            return None
        self.calls += found
        return found
