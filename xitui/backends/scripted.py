"""A model with no weights that writes what its script says: xitui's test engine (as llm's MockModel).

Its "model file" is a JSON script (the file a spec's model_uri names, or `script.json` in that directory): rules
tried in order, the first that fits a request answers it. A rule fits when its `match` is in the prompt (the
conversation as the chat format wrote it) and its `constraint` names the form the answer is held to ("none": free
text; absent: any). A reply is raw model output: `<think>...</think>` for a thinking model, `<tool_call>{...}
</tool_call>` (or the chat format's own call syntax) for a call, so that the worker's own code takes reasoning and
calls out, cuts at stop words and counts usage, as it does for a real model. It runs as a batch Engine
(backends/base.py): requests take the worker's batched path, prepared on their own thread, written side by side in
`slots`, cancelled by the worker, one request's error its own.

    {"slots": 4,                # requests written at once (a launch's n_parallel comes first)
     "chat_template": null,     # the template "the model file carries" (a spec's own comes first)
     "grammars": true,          # false: every constraint refused, as by an engine without grammars
     "rules": [
       {"match": "weather", "constraint": "tool_call",
        "reply": "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>"},
       {"match": "story", "reply": ["Once", " upon", " a", " time"], "repeat": 1000, "delay": 0.01},
       {"match": "echo", "echo": "params"},
       {"match": "boom", "reply": "Half an", "error": "scripted failure", "status": 500},
       {"reply": "Hello."}]}

A reply as a string is cut into words (each with the spaces before it), one token each; as a list, each item is
a token. `repeat` writes it that many times over; `delay` waits that long before each token. `echo` writes what
the engine got instead (the prompt, the sampling settings, or the form the answer is held to) as JSON, whole: no
stop word cuts it, no tag in it acts. `error` ends the request with that error once the reply is written (before
any text: the response's status); `fail` makes the engine's step raise there instead, so every request running or
waiting gets the error, as from a real engine's failure. A prompt's tokens are its characters: usage's
prompt_tokens is the rendered prompt's length.

Served only by a server started with XITUI_SCRIPTED_ENGINE=1 (server/runtime/launch_plan.py), to a launch that names
model_engine "scripted".
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xitui import wire
from xitui.backends.base import Backend, GenerateParams, RequestError, Sender, StopWords, model_path, token_budget
from xitui.core.errors import LaunchError, XituiError

#: The script's name in a model directory.
SCRIPT_NAME = "script.json"
#: What a rule's `echo` may name, and what a rule's `constraint` may be besides a constraint's kind.
ECHOES = ("prompt", "params", "constraint")
CONSTRAINTS = ("none", "json", "json_schema", "gbnf", "tool_call")
#: Longest the engine sleeps when no token is due: a new request joins the batch at most this late.
IDLE_STEP = 0.01
_WORDS = re.compile(r"\s*\S+|\s+")


class ScriptError(XituiError):
    """The script has no answer for a request: the script's fault, not the client's."""

    status_code = 500


@dataclass
class Rule:
    """One rule of the script (see the module's docstring)."""

    match: str = ""
    constraint: str | None = None
    reply: list[str] = field(default_factory=list)
    repeat: int = 1
    delay: float = 0.0
    echo: str | None = None
    error: str | None = None
    status: int = 500
    fail: str | None = None

    def fits(self, prompt: str, form: wire.Constraint | None) -> bool:
        if self.match not in prompt:
            return False
        kind = next(iter(form), "none") if form else "none"
        return self.constraint is None or self.constraint == kind


@dataclass
class Script:
    """A script: its rules and what its model says of itself."""

    rules: list[Rule]
    slots: int = 4
    chat_template: str | None = None
    grammars: bool = True

    def rule_for(self, prompt: str, form: wire.Constraint | None) -> Rule:
        for rule in self.rules:
            if rule.fits(prompt, form):
                return rule
        raise ScriptError(f"the script has no rule for this prompt: {prompt[-80:]!r}")


def tokens_of(text: str) -> list[str]:
    """A reply's tokens: its words, each with the spaces before it."""
    return _WORDS.findall(text)


def read_script(data: Any) -> Script:
    """The script from its JSON (a list of rules, or an object with `rules`); ValueError naming what is wrong."""
    top = {"rules": data} if isinstance(data, list) else data
    if not isinstance(top, dict) or not isinstance(top.get("rules"), list):
        raise ValueError("a script is a list of rules, or an object with a list of `rules`")
    unknown = set(top) - {"rules", "slots", "chat_template", "grammars"}
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r}")
    rules = [_rule(item, f"rules[{i}]") for i, item in enumerate(top["rules"])]
    slots = top.get("slots", 4)
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ValueError("slots: a whole number, at least 1")
    template = top.get("chat_template")
    if template is not None and not isinstance(template, str):
        raise ValueError("chat_template: a string")
    return Script(rules, slots, template, bool(top.get("grammars", True)))


def _rule(item: Any, where: str) -> Rule:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: an object")
    names = {f.name for f in dataclasses.fields(Rule)}
    unknown = set(item) - names
    if unknown:
        raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    rule = Rule(**{k: v for k, v in item.items() if k != "reply"})
    reply = item.get("reply", "")
    if isinstance(reply, str):
        rule.reply = tokens_of(reply)
    elif isinstance(reply, list) and all(isinstance(t, str) for t in reply):
        rule.reply = list(reply)
    else:
        raise ValueError(f"{where}.reply: a string, or a list of strings (one a token)")
    for name in ("match", "error", "fail"):
        value = getattr(rule, name)
        if not isinstance(value, str) and (name == "match" or value is not None):
            raise ValueError(f"{where}.{name}: a string")
    if rule.constraint is not None and rule.constraint not in CONSTRAINTS:
        raise ValueError(f"{where}.constraint: one of {', '.join(CONSTRAINTS)}")
    if rule.echo is not None and rule.echo not in ECHOES:
        raise ValueError(f"{where}.echo: one of {', '.join(ECHOES)}")
    if isinstance(rule.repeat, bool) or not isinstance(rule.repeat, int) or rule.repeat < 1:
        raise ValueError(f"{where}.repeat: a whole number, at least 1")
    if isinstance(rule.delay, bool) or not isinstance(rule.delay, (int, float)) or not 0 <= rule.delay <= 60:
        raise ValueError(f"{where}.delay: seconds, from 0 to 60")
    if isinstance(rule.status, bool) or not isinstance(rule.status, int) or not 400 <= rule.status <= 599:
        raise ValueError(f"{where}.status: an HTTP error status")
    return rule


class ScriptedBackend(Backend):
    """The script's model: a prompt's tokens are its characters; its batch engine writes the rules' replies."""

    engine_name = "scripted"

    def __init__(self) -> None:
        self.script = Script(rules=[])

    def load(self, launch: wire.Settings, progress: Callable[[float, str], None]) -> wire.WorkerInfo:
        path = model_path(launch)
        if os.path.isdir(path):
            path = os.path.join(path, SCRIPT_NAME)
        progress(0.5, "loading the script")
        try:
            with open(path, encoding="utf-8") as fh:
                self.script = read_script(json.load(fh))
        except OSError as exc:
            raise LaunchError(f"cannot read the script {path}: {exc.strerror}") from None
        except ValueError as exc:  # (json's errors are ValueErrors too)
            raise LaunchError(f"the script {path}: {exc}") from None
        self.model_chat_template = self.script.chat_template
        slots = int(launch.get("n_parallel") or self.script.slots)
        context = launch["context_length"] or 2048
        self.engine = ScriptedEngine(self.script, slots, context, self.send)
        return {"engine": "scripted", "device": "cpu", "context_length": context, "n_parallel": slots,
                "batching": f"scripted, {slots} request{'s' if slots > 1 else ''} at once"}

    def prompt_tokens(self, prompt: str) -> list[int]:
        return [ord(c) for c in prompt]

    def grammar_for(self, constraint: wire.Constraint) -> wire.Constraint:
        """Any constraint is taken (the server has checked it); the answer follows it only if the script's
        reply does. A script with `grammars: false` refuses them, as an engine without grammars does."""
        if not self.script.grammars:
            raise RequestError("grammars are not served by this scripted model (its script says grammars: false)")
        return constraint


@dataclass
class Writing:
    """A request the engine writes: its reply's tokens and how far it is."""

    rid: int
    rule: Rule
    reply: list[str]
    params: GenerateParams
    stop: StopWords
    prompt_tokens: int
    budget: int
    written: int = 0
    due: float = 0.0
    started: float = 0.0
    first: float | None = None

    @property
    def length(self) -> int:
        return len(self.reply) * self.rule.repeat


class ScriptedEngine:
    """The Engine (backends/base.py) of a scripted model: up to `slots` requests at once, each a token a step
    (once its delay has passed); the others wait their turn."""

    def __init__(self, script: Script, slots: int, context: int, send: Sender):
        self.script = script
        self.slots = slots
        self.context = context
        self.send = send
        self.cancelled: set[int] = set()
        self.waiting: deque[Writing] = deque()
        self.running: list[Writing] = []
        #: The engine's clock and its wait (a test's fakes in their place make delays take no time).
        self.clock: Callable[[], float] = time.perf_counter
        self.sleep: Callable[[float], None] = time.sleep

    @property
    def busy(self) -> bool:
        return bool(self.running or self.waiting)

    def submit(self, rid: int, prompt: list[int], params: GenerateParams, stop_ids: set[int],
               images: dict[int, Any] | None = None) -> None:
        text = "".join(map(chr, prompt))
        budget = token_budget(len(prompt), self.context, params.max_tokens)
        # the form the worker asked the engine to hold the answer to (grammar_for's: a response_format, a forced call)
        rule = self.script.rule_for(text, params.grammar)
        if rule.echo is None:
            reply, stop = rule.reply, StopWords(params.stop)
        else:  # written whole: the stop words it would show would cut it
            reply, stop = tokens_of(_echo(rule.echo, text, params)), StopWords([])
        self.waiting.append(Writing(rid, rule, reply, params, stop, len(prompt), budget))

    def fail_all(self, message: str) -> None:
        for item in [*self.running, *self.waiting]:
            self.send(wire.failed(item.rid, message))
        self.running.clear()
        self.waiting.clear()

    def step(self) -> None:
        while self.waiting and len(self.running) < self.slots:
            item = self.waiting.popleft()
            if item.rid in self.cancelled:
                self.cancelled.discard(item.rid)
                continue
            item.started = self.clock()
            item.due = item.started + item.rule.delay
            self.running.append(item)
        now = self.clock()
        for item in list(self.running):
            if item.rid in self.cancelled:
                self._end(item)
                self.cancelled.discard(item.rid)
            elif item.due <= now:
                self._advance(item, now)
        if self.running:
            wait = min(item.due for item in self.running) - self.clock()
            if wait > 0:
                self.sleep(min(wait, IDLE_STEP))

    def _advance(self, item: Writing, now: float) -> None:
        """Write the item's next token; end it when its reply is written, its budget spent or a stop word met."""
        if item.written < item.length:
            token = item.reply[item.written % len(item.reply)]
            item.written += 1
            item.first = item.first or now
            item.due = now + item.rule.delay
            shown, stopped = item.stop.feed(token)
            logprobs: list[wire.TokenLogprob] | None = None
            if item.params.logprobs is not None:
                top: list[wire.TopLogprob] = [{"token": token, "logprob": 0.0, "bytes": list(token.encode())}]
                logprobs = [{"token": token, "logprob": 0.0, "bytes": list(token.encode()),
                             "top_logprobs": top[:item.params.logprobs]}]
            if shown or logprobs:
                self.send(wire.text(item.rid, shown, logprobs))
            if stopped:
                self._end(item)
                self.send(wire.done(item.rid, "stop", item.prompt_tokens, item.written, item.started, item.first,
                                    stop_word=item.stop.hit))
                return
            if item.written < item.length:
                if item.written >= item.budget:
                    self._end(item)
                    self._done(item, "length")
                return
        if item.rule.fail is not None:  # the reply is written
            raise RuntimeError(item.rule.fail)
        self._end(item)
        if item.rule.error is not None:
            self.send(wire.failed(item.rid, item.rule.error, item.rule.status))
        else:
            self._done(item, "stop")

    def _end(self, item: Writing) -> None:
        self.running.remove(item)

    def _done(self, item: Writing, reason: wire.FinishReason) -> None:
        rest = item.stop.flush()
        if rest:
            self.send(wire.text(item.rid, rest))
        self.send(wire.done(item.rid, reason, item.prompt_tokens, item.written, item.started, item.first))


def _echo(what: str, prompt: str, params: GenerateParams) -> str:
    """What an `echo` rule writes: the prompt as the engine got it, the request's settings or the form its answer
    is held to, as JSON with every `<` escaped, so that no thought or call tag in it takes effect."""
    if what == "prompt":
        value: Any = prompt
    elif what == "constraint":
        value = params.grammar
    else:
        value = {k: v for k, v in dataclasses.asdict(params).items() if k not in ("grammar", "constraint")}
    return json.dumps(value, sort_keys=True).replace("<", "\\u003c")
