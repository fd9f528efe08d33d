"""Prompt styles render exact text; chat templates render in a sandbox."""

from __future__ import annotations

import pytest

from xitui.core.chat_format.prompts import (
    ChatTemplateError,
    PromptError,
    PromptStyle,
    builtin_styles,
    get_style,
    render_chat_template,
    render_prompt,
)

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Name a colour."},
]

# The exact text each builtin style renders for a two-turn conversation with a system prompt.
PINNED = [
    (
        "ADD_COLON_SINGLE",
        "You are terse.\nUSER: Hi there\nASSISTANT: Hello!\nUSER: Name a colour.\nASSISTANT:",
    ),
    (
        "ADD_COLON_SINGLE_COT",
        "You are terse.\n\n### Instruction: Hi there\n\n### Response: Hello!\n\n### Instruction: Name a colour.\n\n### Response: Let's think step by step.",
    ),
    ("ADD_COLON_TWO", "You are terse. USER: Hi there ASSISTANT: Hello!</s>USER: Name a colour. ASSISTANT:"),
    (
        "c4ai-command-r",
        "<BOS_TOKEN><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are terse.<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi there<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hello!<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Name a colour.<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
    ),
    ("CHATGLM", "You are terse.\n[Round 0]\n问：Hi there\n答：Hello!\n[Round 1]\n问：Name a colour.\n答："),
    (
        "CHATGLM3",
        "<|system|>\n You are terse.\n<|user|>\n Hi there\n<|assistant|>\n Hello!\n<|user|>\n Name a colour.\n<|assistant|>",
    ),
    (
        "CHATML",
        "<system>You are terse.\n<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nName a colour.<|end|>\n<|assistant|>\n",
    ),
    (
        "CodeShell",
        "You are terse.\n## human:Hi there|<end>|## assistant: Hello!|<end>|## human:Name a colour.|<end>|## assistant:",
    ),
    (
        "DEEPSEEK_CHAT",
        "You are terse.User: Hi there\n\nAssistant: Hello!<｜end▁of▁sentence｜>User: Name a colour.\n\nAssistant:",
    ),
    (
        "DEEPSEEK_CODER",
        "You are terse.\n### Instruction:\nHi there\n### Response:\nHello!\n### Instruction:\nName a colour.\n### Response:\n",
    ),
    ("FALCON", "You are terse.\nUser: Hi there\n\nAssistant: Hello!\n\nUser: Name a colour.\n\nAssistant:"),
    (
        "gemma",
        "<start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nName a colour.<end_of_turn>\n<start_of_turn>model\n",
    ),
    (
        "GORILLA_OPENFUNCTIONS",
        "You are terse.\nUSER: <<question>> Hi there\nASSISTANT: Hello!\nUSER: <<question>> Name a colour.\nASSISTANT: ",
    ),
    ("INSTRUCTION", "You are terse.\nUser:\n\nName a colour.\nAssistant:"),
    (
        "INTERNLM",
        "<s>You are terse.\n<|User|>:Hi there<eoh>\n<|Bot|>:Hello!<eoa>\n<|User|>:Name a colour.<eoh>\n<|Bot|>:",
    ),
    (
        "INTERNLM2",
        "<s><|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "LLAMA2",
        "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] Name a colour. [/INST]",
    ),
    (
        "LLAMA3",
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    ("MINICPM-2B", "You are terse.<用户>Hi there<AI>Hello!<用户>Name a colour.<AI>"),
    ("MISTRAL", "<s>[INST] You are terse.\n\nHi there [/INST]Hello!</s>[INST] Name a colour. [/INST]"),
    ("mistral-nemo", "<s>[INST]Hi there[/INST]Hello!</s>[INST]You are terse.\n\nName a colour.[/INST]"),
    ("MIXTRAL_V01", "<s>[INST] You are terse.\n\nHi there [/INST]Hello!</s>[INST] Name a colour. [/INST]"),
    (
        "NO_COLON_TWO",
        "You are terse. <reserved_102> Hi there <reserved_103> Hello!</s> <reserved_102> Name a colour. <reserved_103> ",
    ),
    ("OmniLMM", "You are terse.\nuser: Hi there\nassistant: Hello!\nuser: Name a colour.\nassistant:"),
    (
        "orion",
        "<s>You are terse.\n\nHuman: Hi there\n\nassistant: </s>Hello!</s>Human: Name a colour.\n\nassistant: </s>",
    ),
    (
        "PHI3",
        "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nName a colour.<|end|>\n<|assistant|>\n",
    ),
    (
        "QWEN",
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "XVERSE",
        "You are terse.\n\nHuman: Hi there\n\nAssistant: Hello!<|endoftext|>Human: Name a colour.\n\nAssistant: ",
    ),
]


@pytest.mark.parametrize(("name", "expected"), PINNED, ids=[p[0] for p in PINNED])
def test_style_renders_exact_text(name: str, expected: str) -> None:
    style = get_style(name)
    assert style is not None
    assert render_prompt(style, CONVERSATION) == expected


def test_every_builtin_style_is_pinned() -> None:
    assert {name.upper() for name, _ in PINNED} == set(builtin_styles())
    assert len(builtin_styles()) >= 27


def test_style_default_system_prompt_is_used_without_a_system_message() -> None:
    style = get_style("llama2")
    assert style is not None
    text = render_prompt(style, [{"role": "user", "content": "Hi"}])
    assert text == "<s>[INST] <<SYS>>\nYou are a helpful AI assistant.\n<</SYS>>\n\nHi [/INST]"
    qwen = get_style("QWEN")
    assert qwen is not None
    assert render_prompt(qwen, [{"role": "user", "content": "Hi"}]) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_custom_fields_change_the_rendering() -> None:
    style = PromptStyle(
        style_name="ADD_COLON_TWO",
        system_prompt="SYS",
        roles=["Q", "A"],
        intra_message_sep="|",
        inter_message_sep="#",
    )
    assert render_prompt(style, CONVERSATION[1:]) == "SYS|Q: Hi there|A: Hello!#Q: Name a colour.|A:"


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([], "the last message must come from the user"),
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "the last message must come",
        ),
        ([{"role": "robot", "content": "a"}], "messages[0].role: must be system, user or assistant"),
        ([{"role": "user", "content": 3}], "messages[0].content: must be a string"),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "system", "content": "b"},
                {"role": "user", "content": "c"},
            ],
            "messages[1]: a system message must come first",
        ),
    ],
)
def test_bad_conversations_are_clear_errors(messages: list, problem: str) -> None:
    style = get_style("QWEN")
    assert style is not None
    with pytest.raises(PromptError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        render_prompt(style, messages)


GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n{{ message['content'] | trim }}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def test_chat_template_renders_like_transformers() -> None:
    text = render_chat_template(GEMMA_TEMPLATE, CONVERSATION[1:], bos_token="<bos>")
    assert text == (
        "<bos><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nName a colour.<end_of_turn>\n<start_of_turn>model\n"
    )


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{% set x = messages.append({'role': 'user'}) %}{{ x }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    ],
)
def test_chat_template_sandbox_refuses_escapes(template: str) -> None:
    with pytest.raises(ChatTemplateError):
        render_chat_template(template, CONVERSATION[1:])


def test_chat_template_raise_exception_is_a_clear_error() -> None:
    with pytest.raises(ChatTemplateError, match="chat template: roles must alternate"):
        render_chat_template("{{ raise_exception('roles must alternate') }}", CONVERSATION)
