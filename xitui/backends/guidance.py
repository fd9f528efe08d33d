"""The form an answer must take, held while it is written, the same way on both engines: llguidance.

Why llguidance rather than llama.cpp's own grammar sampler: llama.cpp's GBNF parser recurses once per
nesting level (a 63 KiB grammar of nested groups crashed the worker), llama-cpp-python's JSON-schema
converter writes one nested group per allowed repetition (`maxLength: 100000` crashed it), its sampler
keeps every live parse stack (a 127-byte grammar doubled them per level: seconds per token for every
slot of the batch), and when nothing is allowed it still picks a token and aborts. llguidance compiles
GBNF, Lark and JSON schemas to a lexer and an Earley parser with resource limits: a grammar past them is
refused when it is compiled, and each token's mask has bounded work ("fuel"), so one request can cost its
own answer an error, never the worker or another client's stream.

What is checked here before llguidance sees anything: a GBNF grammar's nesting depth and repetition counts
(its converter to Lark is recursive Python), and every grammar is validated against the model's tokenizer
with the limits below (token ids outside the vocabulary, rules that cannot match, a grammar too large).
"""

from __future__ import annotations

import json
import re
from typing import Any

from xitui import wire
from xitui.backends.base import RequestError
from xitui.core.chat_format import tool_calls

#: Deepest nesting of groups a GBNF grammar may have (real grammars: under 10).
MAX_NESTING = 48
#: Largest count a GBNF repetition `x{m,n}` may give (each is a copy of `x` in the compiled grammar).
MAX_REPEAT = 4096
#: Most rules a GBNF grammar may define (real grammars: tens; a schema's: a few hundred). llguidance's compiler
#: recurses along a chain of rules that name the next: about 3000 of them (47 KiB) crashed the worker with
#: SIGSEGV, and llguidance's GBNF converter takes time in the square of the count (2000: 4 s, 3500: 17 s on
#: the thread that prepares every request of the model).
MAX_RULES = 512
#: llguidance's limits: the work of one token's mask (lexer fuel and parser items, llguidance's defaults:
#: milliseconds at worst, bench/structured.py prints the figure), and what one answer's grammar may hold
#: (lexer states cost 1-2 kB each: at most about 100 MB a request; symbols of the compiled grammar).
LIMITS = {
    "max_items_in_row": 2000,
    "initial_lexer_fuel": 1_000_000,
    "step_lexer_fuel": 200_000,
    "step_max_items": 50_000,
    "max_lexer_states": 50_000,
    "max_grammar_size": 200_000,
    "verbose_errors": False,
}


def limits() -> Any:
    import llguidance

    return llguidance.LLParserLimits(**LIMITS)  # type: ignore[arg-type]  # (the values' types vary by key)


def compact(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as answers are held to it: JSON written as llama.cpp's grammars write it (one space after
    `:` and `,`, none elsewhere: by default llguidance lets whitespace run on, and a small model may fill
    its answer with it), and an object's keys only those it names unless it says otherwise (as llama.cpp's
    converter and OpenAI's strict mode read it: JSON Schema's own default lets a model add any key)."""
    return {**closed(schema), "x-guidance": {"whitespace_flexible": False, "key_separator": ": ",
                                             "item_separator": ", "}}


#: Where a schema holds other schemas: as a dict of them, a list of them, or one.
_NAMED, _LISTED, _ONE = ("properties", "$defs", "definitions"), ("prefixItems", "anyOf", "oneOf", "allOf"), \
    ("items", "additionalProperties", "not")


def closed(schema: Any, depth: int = 0) -> Any:
    """`schema` with `additionalProperties: false` on every object that names properties and says nothing of
    others (a copy; depth bounded, as core/chat_format/json_schema.py checked it)."""
    if not isinstance(schema, dict) or depth > 64:
        return schema
    out = dict(schema)
    if isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    for key in _NAMED:
        if isinstance(out.get(key), dict):
            out[key] = {name: closed(sub, depth + 1) for name, sub in out[key].items()}
    for key in _LISTED:
        if isinstance(out.get(key), list):
            out[key] = [closed(sub, depth + 1) for sub in out[key]]
    for key in _ONE:
        if isinstance(out.get(key), (dict, list)):
            out[key] = [closed(sub, depth + 1) for sub in out[key]] if isinstance(out[key], list) \
                else closed(out[key], depth + 1)
    return out


def check_gbnf_shape(text: str, what: str = "grammar") -> None:
    """Refuse a GBNF grammar nested deeper than MAX_NESTING groups or repeating more than MAX_REPEAT times,
    without parsing it (strings, character classes and comments skipped): what a parser meets first."""
    depth = worst = rules = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == ":" and text.startswith("::=", i):
            rules += 1
            if rules > MAX_RULES:
                raise RequestError(f"{what}: more than {MAX_RULES} rules")
        if ch == '"' or ch == "[":
            close = '"' if ch == '"' else "]"
            i += 1
            while i < n and text[i] != close:
                i += 2 if text[i] == "\\" else 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch == "(":
            depth += 1
            worst = max(worst, depth)
            if worst > MAX_NESTING:
                raise RequestError(f"{what}: groups nested deeper than {MAX_NESTING} levels")
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "{":
            end = text.find("}", i)
            counts = re.findall(r"\d+", text[i:end if end > 0 else n])
            if any(len(c) > 6 or int(c) > MAX_REPEAT for c in counts):
                raise RequestError(f"{what}: a repetition of more than {MAX_REPEAT}")
        i += 1


def check_refs(schema: Any, what: str) -> None:
    """Refuse a schema with more than MAX_RULES `$ref`s: a chain of definitions each naming the next is as
    deep in llguidance's compiler as a chain of GBNF rules (3000 of them, 105 KiB, crashed the worker)."""
    if json.dumps(schema).count('"$ref"') > MAX_RULES:
        raise RequestError(f"{what}: more than {MAX_RULES} $ref")


def source(constraint: wire.Constraint) -> tuple[str, str, str]:
    """(llguidance's grammar format, the grammar's text, the request field it came from) for a constraint
    (GenerationParams.constraint: gbnf, a forced tool call, a JSON schema, or any JSON object)."""
    if "gbnf" in constraint:
        text = str(constraint["gbnf"])
        check_gbnf_shape(text)
        return "gbnf", text, "grammar"
    if "tool_call" in constraint and constraint["tool_call"].get("after_trigger"):
        called = constraint["tool_call"]
        check_refs(called["schema"], "tools")
        return "lark", tool_calls.after_trigger_lark(compact(called["schema"]), called["format"]), "tools"
    if "tool_call" in constraint:
        forced = constraint["tool_call"]
        try:
            own = tool_calls.own_grammar(forced["schema"], forced["format"], forced["several"])
        except (ValueError, RecursionError) as exc:
            raise RequestError(f"tools: a tool's parameters cannot become a grammar ({one_line(exc)})") from None
        if own:
            check_gbnf_shape(own, "tools")
            return "gbnf", own, "tools"
        check_refs(forced["schema"], "tools")
        return "lark", tool_calls.call_lark(compact(forced["schema"]), forced["format"], forced["several"]), "tools"
    if "json_schema" in constraint:
        what = "response_format.json_schema.schema"
        check_refs(constraint["json_schema"], what)
        return "json_schema", json.dumps(compact(constraint["json_schema"])), what
    return "json_schema", json.dumps(compact({"type": "object"})), "response_format"


def compile_for(constraint: wire.Constraint, tokenizer: Any) -> str:
    """llguidance's grammar for a constraint, validated against `tokenizer` with LIMITS; RequestError (a
    one-line 400) when it cannot be held to."""
    import llguidance

    kind, text, what = source(constraint)
    try:
        grammar = _grammar_from(kind, text)
    except (ValueError, RecursionError) as exc:
        said = one_line(exc).removeprefix("Failed to convert the grammar from GBNF to Lark: ")
        raise RequestError(f"{what}: cannot be parsed ({said})" if kind == "gbnf" else f"{what}: {said}") from None
    failed, problems = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer, limits=limits())
    if failed:
        raise RequestError(f"{what}: {one_line(' '.join(problems))}")
    return grammar


#: Every grammar is compiled with llguidance's forced-token search off: it finds the text a grammar forces
#: next, which xitui never uses, and a repetition of a repetition (`x{4000}` of `"a"{4000}`, 34 bytes) cost
#: it 16-32 s per token on the thread that steps every slot, past the fuel limits; without it, 0.2 ms.
NO_FORCING = '%llguidance {"no_forcing": true}\n'


def _grammar_from(kind: str, text: str) -> str:
    """llguidance's grammar for a GBNF grammar, a Lark grammar (the forced calls xitui writes) or a JSON
    schema, always as Lark under NO_FORCING. GBNF is read as GBNF only: llguidance.grammar_from takes a text
    with a `start:` or `%llguidance` line for Lark and passes it on unconverted, past check_gbnf_shape (Lark's
    own syntax: regexes, `%json`, rules of one line each, 4000 chained rules in 47 KiB)."""
    import llguidance

    if kind == "gbnf":
        from llguidance.gbnf_to_lark import gbnf_to_lark

        try:
            lark = gbnf_to_lark(text)
        except Exception as exc:  # as grammar_from words it
            raise ValueError(f"Failed to convert the grammar from GBNF to Lark: {exc}") from None
    elif kind == "json_schema":
        lark = "start: %json " + text
    else:
        lark = text
    lines = lark.splitlines()
    while lines and (not lines[0].strip() or lines[0].startswith("%llguidance")):
        lines.pop(0)  # the converter's own (empty) options: ours replace them
    return llguidance.LLMatcher.grammar_from_lark(NO_FORCING + "\n".join(lines))


def one_line(exc: Any, most: int = 300) -> str:
    """llguidance's error in one line, without the grammar's text it quotes after it (`   1 | ...`): that is
    xitui's own rewriting of the request, not what the client sent."""
    text = re.split(r"\n\s*\d+ \|", str(exc), maxsplit=1)[0]
    return " ".join(text.split())[:most]


class Guide:
    """One answer held to a grammar: its llguidance matcher, and the mask of tokens it allows next (numpy,
    one bit a token, as llguidance writes it)."""

    def __init__(self, tokenizer: Any, grammar: str):
        import llguidance
        import numpy as np

        self.matcher = llguidance.LLMatcher(tokenizer, grammar, limits=limits())
        if self.matcher.is_error():
            raise RequestError(f"grammar: {one_line(self.matcher.get_error())}")
        self.words = (tokenizer.vocab_size + 31) // 32
        self.mask = np.zeros(self.words, dtype=np.uint32)

    def take(self, token: int) -> bool:
        """Move past `token` when the grammar allows it here; False (and nothing moved) when it does not."""
        return self.matcher.try_consume_tokens([token]) == 1

    def allowed(self) -> Any:
        """The mask of tokens allowed next (uint32 words, bit i of word w: token 32w+i). Raises RequestError
        when the grammar has failed (a limit reached) or allows nothing."""
        self.matcher.unsafe_compute_mask_ptr(self.mask.ctypes.data, self.mask.nbytes)
        if self.matcher.is_error():
            raise RequestError(f"the answer's grammar failed here: {one_line(self.matcher.get_error())}")
        if not self.mask.any():
            raise RequestError("the answer's grammar allows no token here")
        return self.mask

    @property
    def done(self) -> bool:
        """Nothing may follow what was taken: the answer's form is complete."""
        return bool(self.matcher.is_stopped())


def allowed_ids(mask: Any, ids: Any) -> Any:
    """For token ids `ids` (a numpy array), whether `mask` allows each one."""
    import numpy as np

    words = mask[np.minimum(ids >> 5, len(mask) - 1)]
    return ((words >> (ids & 31).astype(np.uint32)) & 1).astype(bool) & (ids >> 5 < len(mask))


def guide_bits(mask: Any, n: int) -> Any:
    """`mask` as one bool per token, for the first `n` tokens (those past the mask: not allowed)."""
    import numpy as np

    bits = np.unpackbits(mask.view(np.uint8), bitorder="little").astype(bool)
    return bits[:n] if len(bits) >= n else np.concatenate([bits, np.zeros(n - len(bits), dtype=bool)])


def llama_tokenizer(vocab: Any) -> Any:
    """llguidance's view of a llama.cpp vocabulary (a second or more for 262k tokens: made once a worker),
    with every end-of-generation token (<eos>, <end_of_turn>, <|im_end|>...) as the end of an answer.

    As llguidance.llamacpp makes it (control tokens marked with a 0xFF byte), with llama.cpp's current
    attribute call: that module's deprecated one warns once per token."""
    import ctypes

    import llama_cpp
    from llguidance import LLTokenizer

    n = llama_cpp.llama_vocab_n_tokens(vocab)
    # llama.cpp's own functions, not llama-cpp-python's wrappers, and `string_at` for just the piece's bytes
    # (`buf.raw` copies the whole buffer): 262k tokens of Gemma's vocabulary in 0.3 s instead of 0.9 s
    lib = llama_cpp.llama_cpp._lib
    to_piece, attr_of, is_end = lib.llama_token_to_piece, lib.llama_vocab_get_attr, lib.llama_vocab_is_eog
    control, user = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL, llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    piece_of, size = ctypes.string_at, 1024
    buf = ctypes.create_string_buffer(size)
    tokens: list[bytes] = []
    ends: list[int] = []
    for token in range(n):
        got = to_piece(vocab, token, buf, size, 0, True)
        if got < 0:  # a piece longer than the buffer: the size it needs
            big = ctypes.create_string_buffer(-got)
            got = to_piece(vocab, token, big, -got, 0, True)
            text = piece_of(big, got)
        else:
            text = piece_of(buf, got)
        attr = attr_of(vocab, token)
        if attr & control or (attr & user and text.startswith(b"<") and text.endswith(b">")):
            text = b"\xff" + text
        tokens.append(text)
        if is_end(vocab, token):
            ends.append(token)
    eos = llama_cpp.llama_vocab_eos(vocab)
    if eos in ends:
        ends.remove(eos)
        ends.insert(0, eos)
    tokenize = ctypes.cast(llama_cpp.llama_cpp._lib.llama_tokenize, ctypes.c_void_p).value
    make = LLTokenizer.from_llamacpp  # type: ignore[attr-defined]  # (llguidance's stub lacks it)
    return make(tokens=tokens, vocab_ptr=vocab, tokenize_fptr=tokenize, eos_token=ends or eos, slices=None)
