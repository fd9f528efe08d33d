"""Prompt styles (Xinference's `prompt_style`) and sandboxed chat templates.

A conversation is a list of `{"role": "system"|"user"|"assistant", "content": str}` messages. A system
message, when present, replaces the style's default system prompt. Every style renders the conversation
followed by the opening of the assistant's turn, ready for the model to continue.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache, lru_cache
from importlib import resources
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from xitui.core.errors import XituiError


class PromptStyle(BaseModel):
    """The documented `prompt_style` object."""

    model_config = ConfigDict(extra="ignore", strict=True)

    style_name: str
    system_prompt: str = ""
    roles: list[str] = Field(min_length=2, max_length=2)
    intra_message_sep: str = ""
    inter_message_sep: str = ""
    stop: list[str] | None = None
    stop_token_ids: list[int] | None = None


#: The conversation previews render (`xitui styles NAME`, the wizard): system, user, assistant, user.
SAMPLE_CONVERSATION: list[dict[str, str]] = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is the largest animal in the world?"},
    {"role": "assistant", "content": "The blue whale."},
    {"role": "user", "content": "How long can it grow?"},
]


class PromptError(XituiError):
    """A conversation could not be turned into a prompt."""


Turn = tuple[str, str]  # (role, content) with role "user" or "assistant"
Renderer = Callable[[PromptStyle, str, list[Turn]], str]


@cache
def builtin_styles() -> dict[str, PromptStyle]:
    """Builtin styles keyed by upper-cased name (lookups are case-insensitive)."""
    raw = json.loads(resources.files("xitui.core").joinpath("data/prompt_styles.json").read_text("utf-8"))
    return {item["style_name"].upper(): PromptStyle(**item) for item in raw}


def get_style(name: str) -> PromptStyle | None:
    return builtin_styles().get(name.upper())


def _split(messages: Sequence[Mapping[str, Any]]) -> tuple[str | None, list[Turn]]:
    """Separate the system message from the turns and check the conversation's shape."""
    system: str | None = None
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise PromptError(f"messages[{i}]: must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise PromptError(f"messages[{i}].content: must be a string")
        if role == "system":
            if turns:
                raise PromptError(f"messages[{i}]: a system message must come first")
            system = content if system is None else system + "\n" + content
        elif role in ("user", "assistant"):
            turns.append((role, content))
        else:
            raise PromptError(f"messages[{i}].role: must be system, user or assistant, not {role!r}")
    if not turns or turns[-1][0] != "user":
        raise PromptError("messages: the last message must come from the user")
    return system, turns


def _system_text(style: PromptStyle, system: str | None) -> str:
    """The system text: the conversation's own, else the style's default."""
    if "{system_message}" in style.system_prompt:
        return style.system_prompt.replace("{system_message}", system or "") if system else ""
    return style.system_prompt if system is None else system


def _colon(style: PromptStyle, sys: str, turns: list[Turn], seps: tuple[str, str], opener: str) -> str:
    head = sys + seps[0] if sys else ""
    body = "".join(
        f"{style.roles[role == 'assistant']}: {content}{seps[i % 2]}"
        for i, (role, content) in enumerate(turns)
    )
    return head + body + f"{style.roles[1]}:{opener}"


def _add_colon_single(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    sep = style.intra_message_sep
    return _colon(style, sys, turns, (sep, sep), "")


def _add_colon_single_cot(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    sep = style.intra_message_sep
    return _colon(style, sys, turns, (sep, sep), " Let's think step by step.")


def _add_colon_two(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    return _colon(style, sys, turns, (style.intra_message_sep, style.inter_message_sep), "")


def _deepseek_chat(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    seps = (style.intra_message_sep, style.inter_message_sep)
    body = "".join(
        f"{style.roles[role == 'assistant']}: {content}{seps[i % 2]}"
        for i, (role, content) in enumerate(turns)
    )
    return sys + body + f"{style.roles[1]}:"


def _no_colon_two(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    seps = (style.intra_message_sep, style.inter_message_sep)
    body = "".join(
        f"{style.roles[role == 'assistant']}{content}{seps[i % 2]}" for i, (role, content) in enumerate(turns)
    )
    return sys + body + style.roles[1]


def _deepseek_coder(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    sep = style.inter_message_sep
    body = "".join(f"{style.roles[role == 'assistant']}\n{content}{sep}" for role, content in turns)
    return (sys + sep if sys else "") + body + f"{style.roles[1]}\n"


def _llama2(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    if "<<SYS>>" in sys:
        head = sys
    else:
        head = f"<s>[INST] <<SYS>>\n{sys}\n<</SYS>>\n\n" if sys else "<s>[INST] "
    out = head
    for i, (role, content) in enumerate(turns):
        if role == "user":
            out += (content if i == 0 else f"{style.roles[0]} {content}") + f" {style.roles[1]}"
        else:
            out += f"{style.intra_message_sep}{content}{style.inter_message_sep}"
    return out


def _inst(open_: str, close: str, sep_close: str, system_on_last: bool) -> Renderer:
    """Mistral-like styles: `[INST] user [/INST]assistant</s>`, the system prompt folded into a user turn.

    The `[INST]` markers are the model's tokens, whatever the style's `roles` say (MIXTRAL_V01 names them
    user/assistant)."""

    def render(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
        users = [i for i, (role, _) in enumerate(turns) if role == "user"]
        target = users[-1] if system_on_last else users[0]
        out = "<s>"
        for i, (role, content) in enumerate(turns):
            if role == "user":
                text = f"{sys}\n\n{content}" if sys and i == target else content
                out += f"[INST]{open_}{text}{close}[/INST]"
            else:
                out += f"{content}{sep_close}"
        return out

    return render


def _llama3(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    intra, inter = style.intra_message_sep, style.inter_message_sep
    out = "<|begin_of_text|>"
    if sys:
        out += f"<|start_header_id|>system<|end_header_id|>{intra}{sys}{inter}"
    for role, content in turns:
        out += (
            f"<|start_header_id|>{style.roles[role == 'assistant']}<|end_header_id|>{intra}{content}{inter}"
        )
    return out + f"<|start_header_id|>{style.roles[1]}<|end_header_id|>{intra}"


def _qwen(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    sep = style.intra_message_sep
    parts = [f"<|im_start|>system\n{sys}<|im_end|>"] if sys else []
    parts += [
        f"<|im_start|>{style.roles[role == 'assistant']}\n{content}<|im_end|>" for role, content in turns
    ]
    parts.append(f"<|im_start|>{style.roles[1]}\n")
    return sep.join(parts)


def _chatml(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    end = style.intra_message_sep
    out = f"{sys}{end}\n" if sys else ""
    out += "".join(f"{style.roles[role == 'assistant']}\n{content}{end}\n" for role, content in turns)
    return out + f"{style.roles[1]}\n"


def _internlm2(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    end = style.intra_message_sep
    out = f"<s><|im_start|>system\n{sys}{end}\n" if sys else "<s>"
    out += "".join(f"{style.roles[role == 'assistant']}\n{content}{end}\n" for role, content in turns)
    return out + f"{style.roles[1]}\n"


def _internlm(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    seps = (style.intra_message_sep, style.inter_message_sep)
    out = "<s>" + (f"{sys}\n" if sys else "")
    out += "".join(
        f"{style.roles[role == 'assistant']}:{content}{seps[role == 'assistant']}" for role, content in turns
    )
    return out + f"{style.roles[1]}:"


def _phi3(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    intra, inter = style.intra_message_sep, style.inter_message_sep
    out = f"<|system|>{intra}{sys}{inter}" if sys else ""
    out += "".join(
        f"<|{style.roles[role == 'assistant']}|>{intra}{content}{inter}" for role, content in turns
    )
    return out + f"<|{style.roles[1]}|>{intra}"


def _chatglm3(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    lines = [f"<|system|>\n {sys}"] if sys else []
    lines += [f"<|{style.roles[role == 'assistant']}|>\n {content}" for role, content in turns]
    lines.append(f"<|{style.roles[1]}|>")
    return "\n".join(lines)


def _chatglm(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    sep = style.intra_message_sep
    out = f"{sys}{sep}" if sys else ""
    round_ = 0
    for role, content in turns:
        if role == "user":
            out += f"[Round {round_}]{sep}{style.roles[0]}：{content}{sep}"
            round_ += 1
        else:
            out += f"{style.roles[1]}：{content}{sep}"
    return out + f"{style.roles[1]}："


def _falcon(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    out = f"{sys}\n" if sys else ""
    for role, content in turns:
        text = content.replace("\r\n", "\n").replace("\n\n", "\n")
        out += f"{style.roles[role == 'assistant']}: {text}\n\n"
    return out + f"{style.roles[1]}:"


def _gemma(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    out = ""
    for i, (role, content) in enumerate(turns):
        text = f"{sys}\n\n{content}" if sys and i == 0 else content
        out += f"<start_of_turn>{style.roles[role == 'assistant']}\n{text}<end_of_turn>\n"
    return out + f"<start_of_turn>{style.roles[1]}\n"


def _xverse(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    out = f"{sys}\n\n" if sys else ""
    for role, content in turns:
        out += f"Human: {content}\n\n" if role == "user" else f"Assistant: {content}<|endoftext|>"
    return out + "Assistant: "


def _codeshell(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    out = f"{sys}\n" if sys else ""
    out += "".join(f"{style.roles[role == 'assistant']}{content}|<end>|" for role, content in turns)
    return out + style.roles[1].rstrip()


def _minicpm(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    out = sys
    for role, content in turns:
        out += ("<AI>" if role == "assistant" else "<用户>") + content.strip()
    return out + "<AI>"


def _orion(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    out = "<s>" + (f"{sys}\n\n" if sys else "")
    for role, content in turns:
        if role == "user":
            out += f"{style.roles[0]}: {content}\n\n"
        else:
            out += f"{style.roles[1]}: </s>{content}</s>"
    return out + f"{style.roles[1]}: </s>"


def _command_r(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    sep = style.inter_message_sep
    out = f"<BOS_TOKEN><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{sys}{sep}"
    out += "".join(f"{style.roles[role == 'assistant']}{content}{sep}" for role, content in turns)
    return out + style.roles[1]


def _instruction(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    # A one-shot instruction template: the last user message fills the `{0}` slot; history is not used.
    if "{0}" in sys:
        return sys.replace("{0}", turns[-1][1])
    return f"{sys}\n{style.roles[0]}:\n\n{turns[-1][1]}\n{style.roles[1]}:"


def _gorilla(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    out = f"{sys}\n" if sys else ""
    for role, content in turns:
        out += f"USER: <<question>> {content}\n" if role == "user" else f"ASSISTANT: {content}\n"
    return out + "ASSISTANT: "


def _role_colon(style: PromptStyle, sys: str, turns: list[Turn]) -> str:
    out = f"{sys}\n" if sys else ""
    out += "".join(f"{style.roles[role == 'assistant']}: {content}\n" for role, content in turns)
    return out + f"{style.roles[1]}:"


_RENDERERS: dict[str, Renderer] = {
    "ADD_COLON_SINGLE": _add_colon_single,
    "ADD_COLON_SINGLE_COT": _add_colon_single_cot,
    "ADD_COLON_TWO": _add_colon_two,
    "NO_COLON_TWO": _no_colon_two,
    "DEEPSEEK_CHAT": _deepseek_chat,
    "DEEPSEEK_CODER": _deepseek_coder,
    "LLAMA2": _llama2,
    "LLAMA3": _llama3,
    "MISTRAL": _inst(" ", " ", "</s>", system_on_last=False),
    "MIXTRAL_V01": _inst(" ", " ", "</s>", system_on_last=False),
    "MISTRAL-NEMO": _inst("", "", "</s>", system_on_last=True),
    "QWEN": _qwen,
    "CHATML": _chatml,
    "INTERNLM": _internlm,
    "INTERNLM2": _internlm2,
    "PHI3": _phi3,
    "CHATGLM": _chatglm,
    "CHATGLM3": _chatglm3,
    "FALCON": _falcon,
    "GEMMA": _gemma,
    "XVERSE": _xverse,
    "CODESHELL": _codeshell,
    "MINICPM-2B": _minicpm,
    "ORION": _orion,
    "C4AI-COMMAND-R": _command_r,
    "INSTRUCTION": _instruction,
    "GORILLA_OPENFUNCTIONS": _gorilla,
    "OMNILMM": _role_colon,
}


def renderable_style_names() -> set[str]:
    return set(_RENDERERS)


def render_prompt(style: PromptStyle, messages: Sequence[Mapping[str, Any]]) -> str:
    """Render a conversation to the prompt text of `style`, ending where the assistant speaks next."""
    renderer = _RENDERERS.get(style.style_name.upper())
    if renderer is None:
        raise PromptError(f"prompt style {style.style_name!r} is not one xitui can render")
    system, turns = _split(messages)
    return renderer(style, _system_text(style, system), turns)


# --- chat templates ------------------------------------------------------------------------------


class ChatTemplateError(XituiError):
    """A chat template failed to compile or render (including sandbox violations)."""


@cache
def _jinja_env() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ChatTemplateError(f"chat template: {message}")

    def strftime_now(fmt: str) -> str:
        import datetime

        return datetime.datetime.now().strftime(fmt)

    def tojson(value: Any, indent: int | None = None) -> str:
        return json.dumps(value, ensure_ascii=False, indent=indent)

    # Same whitespace rules as transformers' apply_chat_template, so templates written for it render alike.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    env.filters["tojson"] = tojson
    return env


#: Longest chat template accepted: the largest real ones (tool-calling templates) are tens of KiB; compiling
#: one costs about 7 ms per KiB here.
MAX_CHAT_TEMPLATE = 64 * 1024


def compile_chat_template(template: str) -> Any:
    """Compile `template`; any problem (syntax, size, nesting too deep) becomes one ChatTemplateError line.
    Compiled templates are kept: specs are parsed again at every registry read."""
    _check_size(template)
    return _compiled(template)


def check_chat_template(template: str) -> None:
    """What registering a spec needs: the template parses and turns into Python source (unknown filters
    and tests are found there), without Python's own compile of that source, which holds the interpreter
    for tens of milliseconds per large template: the server checks in a thread while it serves others.
    The worker that renders it compiles it."""
    _check_size(template)
    _checked(template)


def _check_size(template: str) -> None:
    if len(template) > MAX_CHAT_TEMPLATE:
        raise ChatTemplateError(f"chat_template: {len(template) // 1024} KiB, longer than the "
                                f"{MAX_CHAT_TEMPLATE // 1024} KiB a chat template may be")


@lru_cache(maxsize=64)
def _compiled(template: str) -> Any:
    with _template_errors():
        return _jinja_env().from_string(template)


@lru_cache(maxsize=256)
def _checked(template: str) -> None:
    with _template_errors():
        _jinja_env().compile(template, raw=True)


@contextmanager
def _template_errors() -> Iterator[None]:
    from jinja2 import TemplateSyntaxError

    try:
        yield
    except TemplateSyntaxError as exc:
        raise ChatTemplateError(f"chat_template: line {exc.lineno}: {exc.message}") from None
    except (RecursionError, MemoryError, SyntaxError, ValueError, TypeError) as exc:
        # Jinja turns a template into Python source: blocks nested hundreds deep fail there
        raise ChatTemplateError(f"chat_template: cannot be compiled ({type(exc).__name__}: nested too deep or "
                                "too large)") from None


def render_chat_template(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """Render a Jinja chat template in a sandbox; anything reaching for Python internals fails cleanly."""
    from jinja2 import TemplateError
    from jinja2.exceptions import SecurityError

    compiled = compile_chat_template(template)
    try:
        return compiled.render(
            messages=list(messages),
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **extra,
        )
    except ChatTemplateError:
        raise
    except SecurityError as exc:
        raise ChatTemplateError(f"chat template refused by the sandbox: {exc}") from None
    except (TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise ChatTemplateError(f"chat template failed: {exc}") from None


# --- a model's conversations ------------------------------------------------------------------------


class ChatFormatOwner(Protocol):
    """What a conversation's prompt is made from: a spec's LLMFamily, or the wizard's draft of one."""

    @property
    def model_name(self) -> str | None: ...
    @property
    def chat_template(self) -> str | None: ...
    @property
    def prompt_style(self) -> PromptStyle | None: ...
    @property
    def family_style(self) -> PromptStyle | None: ...


def conversation_prompt(family: ChatFormatOwner, model_template: str | None, messages: Sequence[Mapping[str, Any]],
                        bos: str = "", eos: str = "", **extra: Any) -> str:
    """The prompt a model sees for a conversation: the spec's chat_template, else its prompt style, else the
    model's own template, else the style of the spec's family. What the server renders for every chat request,
    and what the wizard previews."""
    if family.chat_template:
        return render_chat_template(family.chat_template, messages, bos_token=bos, eos_token=eos, **extra)
    if family.prompt_style is not None:
        return render_prompt(family.prompt_style, messages)
    if model_template:
        return render_chat_template(model_template, messages, bos_token=bos, eos_token=eos, **extra)
    if family.family_style is not None:
        return render_prompt(family.family_style, messages)
    raise PromptError(
        f"model {family.model_name!r} has no chat format: add \"prompt_style\" (see `xitui styles`) "
        "or \"chat_template\" to its spec"
    )


def chat_format(family: ChatFormatOwner, model_template: str | None) -> str | None:
    """Which chat format a model's conversations will use, in words (None: it cannot chat)."""
    if family.chat_template:
        return "the spec's chat_template"
    if family.prompt_style is not None:
        return f"prompt style {family.prompt_style.style_name}"
    if model_template:
        return "the model's own chat template"
    if family.family_style is not None:
        return f"prompt style {family.family_style.style_name} (its family's: the model has no template)"
    return None
