"""Model specs: parse the documented (version 1, flat) and current (version 2) JSON forms into one form.

Parsing collects every broken rule as one line naming the field path (`model_specs[0].quantization: ...`)
and raises a single SpecError; nothing else escapes, whatever the input. The normalised form serialises to
what Xinference 4.x returns for a registration, so `xinference-client` can read it.
"""

from __future__ import annotations

import json
import os
import re
import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from xitui.core.chat_format import tool_calls
from xitui.core.chat_format.prompts import PromptStyle, get_style, renderable_style_names
from xitui.core.chat_format.reasoning import DEFAULT_TAGS
from xitui.core.errors import SpecError
from xitui.core.specs import catalog
from xitui.core.specs.names import LLM_ABILITIES, MODEL_ID_RE, NAME_RE, ModelType

SIZE_RE = re.compile(r"^\d+(_\d+)?$")
GGUF_QUANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

LLM_FORMATS = ("pytorch", "ggufv2", "ggmlv3")
PYTORCH_QUANTIZATIONS = ("none", "4-bit", "8-bit")
MODEL_HUBS = ("huggingface", "modelscope")


def normalise_model_type(value: str) -> ModelType:
    """'LLM', 'embedding' or 'rerank', whatever the case; anything else is a SpecError."""
    lowered = str(value).lower()
    if lowered == "llm":
        return "LLM"
    if lowered in ("embedding", "rerank"):
        return lowered  # type: ignore[return-value]
    raise SpecError([f"model_type: unsupported model type {value!r} (xitui serves LLM, embedding and rerank)"])


# --- the normalised form ---------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class LLMSpec(_Model):
    """One downloadable/launchable variant of an LLM: a format, a size and one quantization."""

    model_format: str
    model_size_in_billions: int | str
    quantization: str
    model_id: str | None = None
    model_file_name_template: str | None = None
    model_hub: str = "huggingface"
    model_uri: str | None = None
    model_revision: str | None = None
    #: GGUF only: the vision (or audio) projector files, named like the model file (`{quantization}` allowed),
    #: relative to the model's folder or absolute; a launch's `multimodal_projector` picks one, else the first.
    multimodal_projectors: list[str] | None = None


class LLMFamily(_Model):
    """An LLM spec (Xinference's family form): what the model is, its weights' entries, its chat format."""

    version: int = 2
    context_length: int = 2048
    model_name: str
    model_lang: list[str]
    model_ability: list[str]
    model_description: str | None = None
    model_family: str = "other"
    model_specs: list[LLMSpec]
    chat_template: str | None = None
    stop_token_ids: list[int] | None = None
    stop: list[str] | None = None
    #: xitui keeps the documented prompt style when a spec gave one (Xinference 4.x dropped the field).
    prompt_style: PromptStyle | None = None
    #: The style of the builtin family the spec names: what the model reads when neither the spec nor the
    #: model's files give a chat format (not part of the registration: it comes from the family each parse).
    family_style: PromptStyle | None = Field(default=None, exclude=True)
    #: How the model writes tool calls (Xinference's field: hermes, qwen, llama3, mistral...; default: read
    #: from the chat template, see core/chat_format/tool_calls.py).
    tool_parser: str | None = None
    #: What opens and closes the thinking of a model with the reasoning ability (Xinference's fields).
    reasoning_start_tag: str | None = None
    reasoning_end_tag: str | None = None
    is_builtin: bool = False

    def registration(self) -> dict[str, Any]:
        """The registration as Xinference 4.x returns it (version 2 form, with `is_builtin`)."""
        return self.model_dump(mode="json")

    def find_specs(
        self, model_format: str | None, size: int | str | None, quantization: str | None
    ) -> list[LLMSpec]:
        """The specs matching the given launch options (None matches anything)."""
        want_size = None if size is None else size_key(size)
        return [
            s
            for s in self.model_specs
            if (model_format is None or s.model_format == model_format)
            and (want_size is None or size_key(s.model_size_in_billions) == want_size)
            and (quantization is None or s.quantization.lower() == quantization.lower())
        ]


class EmbeddingModelSpec(_Model):
    """One weights entry of an embedding model (format, quantization, where the files are)."""

    model_format: str = "pytorch"
    model_id: str | None = None
    model_uri: str | None = None
    quantization: str = "none"
    model_hub: str = "huggingface"
    model_revision: str | None = None


class EmbeddingSpec(_Model):
    """An embedding model spec: dimensions, input limit, languages and its weights' entries."""

    version: int = 2
    model_name: str
    dimensions: int
    max_tokens: int
    language: list[str]
    model_specs: list[EmbeddingModelSpec]
    is_builtin: bool = False

    def registration(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class RerankSpec(_Model):
    """A rerank model spec (Xinference's custom rerank form): a cross-encoder that scores query/document
    pairs; its languages, input limit and weights' entries (pytorch, run by sentence-transformers)."""

    version: int = 2
    model_name: str
    language: list[str]
    max_tokens: int | None = None
    type: str = "normal"
    model_specs: list[EmbeddingModelSpec]
    is_builtin: bool = False

    def registration(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


ModelSpec = LLMFamily | EmbeddingSpec | RerankSpec


def size_key(size: int | float | str) -> str:
    """Compare sizes given as 7, 7.0, "7", "0_5" or 0.5 alike."""
    text = str(size).replace(".", "_")
    head, _, tail = text.partition("_")
    tail = tail.rstrip("0")
    return f"{head}_{tail}" if tail else head


# --- the checker -----------------------------------------------------------------------------------

_MISSING = object()


class _Checker:
    """Collects one line per broken rule while reading a JSON object."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, rule: str) -> None:
        self.problems.append(f"{path}: {rule}")

    def get(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        kind: type | tuple,
        *,
        required: bool = False,
        default: Any = None,
        kind_name: str = "",
    ) -> Any:
        value = obj.get(key, _MISSING)
        if value is _MISSING or value is None:
            if required:
                self.fail(path, "required")
            return default
        # bool is an int to Python but never a valid number in a spec.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            self.fail(path, f"must be {kind_name or _kind_name(kind)}")
            return default
        return value

    def text(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        default: str | None = None,
        empty_ok: bool = False,
    ) -> str | None:
        value = self.get(obj, key, path, str, required=required, default=default)
        if value is not None and not empty_ok and value is not default and not value.strip():
            self.fail(path, "must not be empty")
            return default
        return value

    def positive_int(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        default: int | None = None,
        maximum: int = 2**31,
    ) -> int | None:
        value = self.get(obj, key, path, int, required=required, default=default, kind_name="an integer")
        if value is not None and value is not default and not 0 < value <= maximum:
            self.fail(path, f"must be between 1 and {maximum}")
            return default
        return value

    def str_list(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        default: list[str] | None = None,
        non_empty: bool = False,
        most: int = 256,
    ) -> list[str] | None:
        """A list of at most `most` strings of at most 256 characters (a spec is re-read on every registry
        read, and stop words are looked for after every token)."""
        value = self.get(
            obj, key, path, list, required=required, default=_MISSING, kind_name="a list of strings"
        )
        if value is _MISSING:
            return default
        if not all(isinstance(v, str) for v in value):
            self.fail(path, "must be a list of strings")
            return default
        if len(value) > most or any(len(v) > 256 for v in value):
            self.fail(path, f"at most {most} strings of at most 256 characters")
            return default
        if non_empty and not value:
            self.fail(path, "must not be empty")
            return default
        return value

    def int_list(self, obj: dict[str, Any], key: str, path: str) -> list[int] | None:
        value = self.get(obj, key, path, list, kind_name="a list of integers")
        if value is None:
            return None
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2**31 - 1 for v in value):
            self.fail(path, "must be a list of non-negative integers (token ids)")
            return None
        if len(value) > 256:
            self.fail(path, "at most 256 token ids")
            return None
        return value


def _tuple(kind: type | tuple) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "an object",
        bool: "true or false",
    }
    return " or ".join(names.get(k, k.__name__) for k in _tuple(kind))


def _load_object(source: str | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(source, (str, bytes)):
        try:
            data = json.loads(source)
        except json.JSONDecodeError as exc:
            raise SpecError(
                [f"spec: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"]
            ) from None
        except (UnicodeDecodeError, RecursionError):
            raise SpecError(["spec: not valid JSON text"]) from None
    else:
        data = source
    if not isinstance(data, dict):
        raise SpecError(["spec: must be a JSON object"])
    return data


def _check_name(c: _Checker, obj: dict[str, Any], builtin: bool) -> str:
    name = c.text(obj, "model_name", "model_name", required=True)
    if name is None:
        return ""
    if builtin:
        return name
    if not NAME_RE.fullmatch(name):
        c.fail(
            "model_name", "must start with a letter or digit, then letters, digits, '_' or '-' (100 at most)"
        )
    elif catalog.is_builtin_name(name):
        c.fail("model_name", f"{name!r} is a builtin model; choose another name")
    return name


def _check_uri(c: _Checker, value: str | None, path: str, want: Literal["dir", "file-or-dir"]) -> str | None:
    if value is None:
        return None
    local = value[len("file://") :] if value.startswith("file://") else value
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", local):
        c.fail(path, "must be file:///absolute/path or an absolute path")
        return None
    if not os.path.isabs(local):
        c.fail(path, "must be an absolute path (file:///path or /path)")
        return None
    if want == "dir" and os.path.isfile(local):
        c.fail(path, "must be a directory, not a file")
        return None
    return value


def local_path(uri: str) -> str:
    """The filesystem path of a `model_uri` (plain path or file:// URI)."""
    return uri[len("file://") :] if uri.startswith("file://") else uri


def _check_model_id(c: _Checker, spec: dict[str, Any], path: str, uri: str | None) -> str | None:
    model_id = c.text(spec, "model_id", f"{path}.model_id")
    if model_id is not None and not MODEL_ID_RE.fullmatch(model_id):
        c.fail(f"{path}.model_id", "must look like 'organisation/repository'")
        return None
    if spec.get("model_id") is None and spec.get("model_uri") is None:
        c.fail(path, "needs model_id (to download) or model_uri (a local copy)")
    return model_id


def _check_template(c: _Checker, spec: dict[str, Any], path: str, fmt: str, uri: str | None) -> str | None:
    template = c.text(spec, "model_file_name_template", f"{path}.model_file_name_template")
    if template is None:
        names_file = uri is not None and os.path.splitext(local_path(uri))[1].lower() in (".gguf", ".bin")
        if fmt in ("ggufv2", "ggmlv3") and not names_file:
            c.fail(f"{path}.model_file_name_template", f"required for {fmt}")
        return None
    problem = _file_template_problem(template)
    if problem:
        c.fail(f"{path}.model_file_name_template", problem)
        return None
    return template


def _file_template_problem(template: str) -> str | None:
    """What is wrong with a file name template (None when nothing is)."""
    if len(template) > 255:
        return "must name a file: at most 255 characters"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"not a valid template ({exc})"
    # `{quantization}` exactly: a format spec (`{quantization:>100000000}`) or a conversion would make every
    # parse of the spec allocate or fail
    if any(f is not None and (f != "quantization" or spec or conv) for _, f, spec, conv in parts):
        return "may only use the {quantization} placeholder, as it is (no format spec or conversion)"
    if "/" in template.replace("{quantization}", "") or template.startswith(".."):
        return "must name a file, not a path"
    return None


def _check_projectors(c: _Checker, spec: dict[str, Any], path: str, fmt: str) -> list[str] | None:
    """`multimodal_projectors`: file names like the model file's (or absolute paths), GGUF specs only."""
    where = f"{path}.multimodal_projectors"
    names = c.str_list(spec, "multimodal_projectors", where, most=16)
    if not names:
        return None
    if fmt != "ggufv2":
        c.fail(where, "only GGUF specs name projector files (a PyTorch vision model reads images without one)")
        return None
    problems = [(i, "must be a file name or an absolute path" if any(ord(ch) < 32 for ch in name)
                 else None if os.path.isabs(name) else _file_template_problem(name)) for i, name in enumerate(names)]
    for i, problem in problems:
        if problem:
            c.fail(f"{where}[{i}]", problem)
    return None if any(problem for _, problem in problems) else names


def _check_size(c: _Checker, spec: dict[str, Any], path: str) -> int | str:
    value = spec.get("model_size_in_billions")
    p = f"{path}.model_size_in_billions"
    if value is None:
        c.fail(p, "required")
    elif isinstance(value, bool):
        c.fail(p, "must be a number such as 7 or 0.5, or a string such as '1_8'")
    elif isinstance(value, int) and value > 0:
        return value
    elif isinstance(value, float) and 0 < value < 1e6:
        return int(value) if value.is_integer() else size_key(repr(value))
    elif isinstance(value, str) and SIZE_RE.fullmatch(value) and value.strip("0_"):
        return int(value) if value.isdigit() else value
    else:
        c.fail(p, "must be a positive number such as 7 or 0.5, or a string such as '1_8'")
    return 0


def _check_quantization(c: _Checker, value: Any, path: str, fmt: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        c.fail(path, "must be a non-empty string")
        return None
    if fmt == "pytorch" and value not in PYTORCH_QUANTIZATIONS:
        c.fail(
            path, f"{value!r} is not a pytorch quantization (use one of: {', '.join(PYTORCH_QUANTIZATIONS)})"
        )
        return None
    if fmt != "pytorch" and not GGUF_QUANT_RE.fullmatch(value):
        c.fail(path, f"{value!r} is not a valid quantization name (letters, digits, '_', '-', '.')")
        return None
    return value


def _check_llm_spec(c: _Checker, spec: Any, path: str, version: int) -> list[LLMSpec]:
    if not isinstance(spec, dict):
        c.fail(path, "must be an object")
        return []
    fmt = c.text(spec, "model_format", f"{path}.model_format", required=True)
    if fmt is not None and fmt not in LLM_FORMATS:
        c.fail(f"{path}.model_format", f"{fmt!r} is not supported (use one of: {', '.join(LLM_FORMATS)})")
        fmt = None
    size = _check_size(c, spec, path)
    want: Literal["dir", "file-or-dir"] = "dir" if fmt == "pytorch" else "file-or-dir"
    uri = _check_uri(c, c.text(spec, "model_uri", f"{path}.model_uri"), f"{path}.model_uri", want)
    model_id = _check_model_id(c, spec, path, uri)
    template = _check_template(c, spec, path, fmt or "", uri)
    projectors = _check_projectors(c, spec, path, fmt or "")
    hub = c.text(spec, "model_hub", f"{path}.model_hub", default="huggingface")
    if hub not in MODEL_HUBS:
        c.fail(f"{path}.model_hub", f"must be one of: {', '.join(MODEL_HUBS)}")
    revision = c.text(spec, "model_revision", f"{path}.model_revision")

    if version == 1:
        if "quantization" in spec and "quantizations" not in spec:
            c.fail(
                f"{path}.quantizations", "required in version 1 specs (a list; version 2 uses 'quantization')"
            )
            return []
        quants_raw = c.get(spec, "quantizations", f"{path}.quantizations", list, required=True, default=[])
        if isinstance(quants_raw, list) and not quants_raw and "quantizations" in spec:
            c.fail(f"{path}.quantizations", "must not be empty")
        quants = [(q, f"{path}.quantizations[{i}]") for i, q in enumerate(quants_raw)]
    else:
        if "quantizations" in spec and "quantization" not in spec:
            c.fail(
                f"{path}.quantization",
                "required in version 2 specs (one per spec; version 1 uses 'quantizations')",
            )
            return []
        if "quantization" not in spec or spec["quantization"] is None:
            c.fail(f"{path}.quantization", "required")
            return []
        quants = [(spec["quantization"], f"{path}.quantization")]
    if fmt is None:
        return []
    out = []
    for value, qpath in quants:
        quant = _check_quantization(c, value, qpath, fmt)
        if quant is not None and template is not None:
            try:
                template.format(quantization=quant)
            except (ValueError, IndexError, KeyError) as exc:
                c.fail(f"{path}.model_file_name_template", f"not a valid template ({exc})")
        if quant is not None:
            out.append(
                LLMSpec(
                    model_format=fmt,
                    model_size_in_billions=size,
                    quantization=quant,
                    model_id=model_id,
                    model_file_name_template=template,
                    model_hub=hub or "huggingface",
                    model_uri=uri,
                    model_revision=revision,
                    multimodal_projectors=projectors,
                )
            )
    return out


def _check_prompt_style(c: _Checker, value: Any) -> PromptStyle | None:
    if value is None:
        return None
    if isinstance(value, str):
        style = get_style(value)
        if style is None:
            family_style = catalog.family_prompt_style(value)
            style = get_style(family_style) if family_style else None
        if style is None:
            c.fail(
                "prompt_style",
                f"{value!r} is neither a builtin prompt style nor a builtin family with one "
                "(see `xitui styles`)",
            )
        return style
    if not isinstance(value, dict):
        c.fail("prompt_style", "must be a style name or an object with style_name, roles...")
        return None
    name = c.text(value, "style_name", "prompt_style.style_name", required=True)
    if name is None:
        return None
    if name.upper() not in renderable_style_names():
        c.fail("prompt_style.style_name", f"{name!r} is not a style xitui can render (see `xitui styles`)")
        return None
    base = get_style(name)
    fields: dict[str, Any] = base.model_dump() if base else {"style_name": name}
    for key in ("system_prompt", "intra_message_sep", "inter_message_sep"):
        text = c.get(value, key, f"prompt_style.{key}", str)
        if text is not None:
            fields[key] = text
    roles = c.str_list(value, "roles", "prompt_style.roles", required=base is None)
    if roles is not None:
        if len(roles) != 2:
            c.fail("prompt_style.roles", "must hold exactly two roles (user, assistant)")
        else:
            fields["roles"] = roles
    stop = c.str_list(value, "stop", "prompt_style.stop", most=64)
    if stop is not None:
        fields["stop"] = stop
    ids = c.int_list(value, "stop_token_ids", "prompt_style.stop_token_ids")
    if ids is not None:
        fields["stop_token_ids"] = ids
    fields["style_name"] = base.style_name if base else name
    return PromptStyle(**fields) if "roles" in fields else None


def _check_version(c: _Checker, data: dict[str, Any], guess: int) -> int:
    version = data.get("version", guess)
    if version not in (1, 2) or isinstance(version, bool):
        c.fail("version", "must be 1 or 2")
        return guess
    return version


def parse_llm(source: str | bytes | dict[str, Any], *, builtin: bool = False, families: bool = True) -> LLMFamily:
    """Parse an LLM spec in either form; raise SpecError listing every problem. `families=False` leaves
    `model_family` to the server that will run the spec (a real Xinference judges its own families)."""
    data = _load_object(source)
    c = _Checker()
    specs_raw = data.get("model_specs")
    guess = (
        1
        if isinstance(specs_raw, list)
        and any(isinstance(s, dict) and "quantizations" in s for s in specs_raw)
        else 2
    )
    version = _check_version(c, data, guess)
    name = _check_name(c, data, builtin)
    context_length = c.positive_int(
        data, "context_length", "context_length", default=2048, maximum=10_000_000
    )
    langs = c.str_list(data, "model_lang", "model_lang", default=["en"])
    abilities = c.str_list(data, "model_ability", "model_ability", default=["generate"], non_empty=True) or []
    for i, ability in enumerate(abilities):
        if ability not in LLM_ABILITIES:
            c.fail(
                f"model_ability[{i}]", f"{ability!r} is not an LLM ability (use: {', '.join(LLM_ABILITIES)})"
            )
    if abilities and not {"generate", "chat"} & set(abilities):
        c.fail("model_ability", "must include 'generate' or 'chat'")
    description = c.text(data, "model_description", "model_description", empty_ok=True)
    family = c.text(data, "model_family", "model_family", default="other")
    if (family is not None and family != "other" and not catalog.is_builtin_family(family) and not builtin
            and families):
        c.fail("model_family", f"{family!r} is not a builtin family; use a builtin family name or 'other' "
                               "(`xitui registrations` lists them)")

    specs: list[LLMSpec] = []
    if specs_raw is None:
        c.fail("model_specs", "required")
    elif not isinstance(specs_raw, list) or not specs_raw:
        c.fail("model_specs", "must be a non-empty list")
    else:
        for i, spec in enumerate(specs_raw):
            specs.extend(_check_llm_spec(c, spec, f"model_specs[{i}]", version))

    if "vision" in abilities and not builtin:
        for i, entry in enumerate(specs_raw if isinstance(specs_raw, list) else []):
            if isinstance(entry, dict) and entry.get("model_format") == "ggufv2" \
                    and not entry.get("multimodal_projectors"):
                c.fail(f"model_specs[{i}].multimodal_projectors", "required for a vision model's GGUF: the "
                       "projector file (mmproj-*.gguf) that turns images into the model's input")
    style = _check_prompt_style(c, data.get("prompt_style"))
    chat_template = c.text(data, "chat_template", "chat_template")
    if chat_template is not None:
        from xitui.core.chat_format.prompts import ChatTemplateError, check_chat_template

        try:
            check_chat_template(chat_template)
        except ChatTemplateError as exc:
            c.problems.append(str(exc))
    stop = c.str_list(data, "stop", "stop", most=64)
    stop_ids = c.int_list(data, "stop_token_ids", "stop_token_ids")
    tool_parser = c.text(data, "tool_parser", "tool_parser")
    if tool_parser is not None and tool_parser.lower() not in {*tool_calls.PARSERS, *tool_calls.UNREAD_PARSERS}:
        c.fail("tool_parser", f"{tool_parser!r} is not a tool parser xitui or Xinference knows (xitui reads: "
                              f"{', '.join(sorted(tool_calls.PARSERS))})")
    reasoning = [c.text(data, key, key) for key in ("reasoning_start_tag", "reasoning_end_tag")]
    if c.problems:
        raise SpecError(c.problems)

    # A builtin family brings its prompt style: for a model without a template of its own (the model's files
    # are read at launch), and its stop words when the spec names none.
    family_style = None
    if style is None and chat_template is None and family and family != "other":
        style_name = catalog.family_prompt_style(family)
        family_style = get_style(style_name) if style_name else None
    if style is None and family and family != "other" and catalog.is_builtin_family(family):
        family_stop, family_ids = catalog.family_stops(family)
        stop = stop if stop is not None else (family_stop or None)
        stop_ids = stop_ids if stop_ids is not None else (family_ids or None)
    words = style or family_style
    if words is not None:
        stop = stop if stop is not None else words.stop
        stop_ids = stop_ids if stop_ids is not None else words.stop_token_ids
    end = reasoning[1] or (DEFAULT_TAGS[1] if "reasoning" in abilities else None)
    ending = [word for word in stop or [] if word in end] if end else []
    if ending:  # the answer would stop inside the tag: a thought never ends, a schema after it is never written
        raise SpecError([f"reasoning_end_tag: {end!r} holds the stop word {ending[0]!r}: no thought could end"])
    return LLMFamily(
        version=2,
        context_length=context_length or 2048,
        model_name=name,
        model_lang=langs or [],
        model_ability=abilities,
        model_description=description,
        model_family=family or "other",
        model_specs=specs,
        chat_template=chat_template,
        stop_token_ids=stop_ids,
        stop=stop,
        prompt_style=style,
        family_style=family_style,
        tool_parser=tool_parser.lower() if tool_parser else None,
        reasoning_start_tag=reasoning[0],
        reasoning_end_tag=reasoning[1],
        is_builtin=builtin,
    )


def parse_embedding(source: str | bytes | dict[str, Any], *, builtin: bool = False) -> EmbeddingSpec:
    """Parse an embedding spec in the flat documented form or the version 2 form."""
    data = _load_object(source)
    c = _Checker()
    _check_version(c, data, 2 if "model_specs" in data else 1)
    name = _check_name(c, data, builtin)
    dims = c.positive_int(data, "dimensions", "dimensions", required=True, maximum=1_000_000)
    max_tokens = c.positive_int(data, "max_tokens", "max_tokens", required=True, maximum=10_000_000)
    language = c.str_list(data, "language", "language", default=["en"])
    specs = _sentence_transformers_weights(c, data, "embedding")
    if c.problems:
        raise SpecError(c.problems)
    return EmbeddingSpec(
        model_name=name,
        dimensions=dims or 0,
        max_tokens=max_tokens or 0,
        language=language or [],
        model_specs=specs,
        is_builtin=builtin,
    )


def parse_rerank(source: str | bytes | dict[str, Any], *, builtin: bool = False) -> RerankSpec:
    """Parse a rerank spec: Xinference's custom rerank form (version 2, model_specs), or the flat form
    (model_id or model_uri at the top, as embedding specs allow)."""
    data = _load_object(source)
    c = _Checker()
    _check_version(c, data, 2 if "model_specs" in data else 1)
    name = _check_name(c, data, builtin)
    max_tokens = c.positive_int(data, "max_tokens", "max_tokens", maximum=10_000_000)
    language = c.str_list(data, "language", "language", default=["en"])
    kind = c.text(data, "type", "type", default="normal")
    specs = _sentence_transformers_weights(c, data, "rerank")
    if c.problems:
        raise SpecError(c.problems)
    return RerankSpec(model_name=name, max_tokens=max_tokens, language=language or [], type=kind or "normal",
                      model_specs=specs, is_builtin=builtin)


def _sentence_transformers_weights(c: _Checker, data: dict[str, Any], kind: str) -> list[EmbeddingModelSpec]:
    """The weights entries of an embedding or rerank spec (model_specs, or the flat form's one)."""
    specs: list[EmbeddingModelSpec] = []
    if "model_specs" in data:
        raw = data["model_specs"]
        if not isinstance(raw, list) or not raw:
            c.fail("model_specs", "must be a non-empty list")
            raw = []
        entries = [(s, f"model_specs[{i}]") for i, s in enumerate(raw)]
    else:
        entries = [(data, "")]
    for spec, path in entries:
        dot = f"{path}." if path else ""
        if not isinstance(spec, dict):
            c.fail(path, "must be an object")
            continue
        fmt = c.text(spec, "model_format", f"{dot}model_format", default="pytorch")
        if fmt != "pytorch":
            c.fail(f"{dot}model_format", f"{kind} models use 'pytorch' (sentence-transformers)")
        quant = c.text(spec, "quantization", f"{dot}quantization", default="none")
        if quant != "none":
            c.fail(f"{dot}quantization", f"{kind} models use 'none'")
        uri = _check_uri(c, c.text(spec, "model_uri", f"{dot}model_uri"), f"{dot}model_uri", "dir")
        model_id = c.text(spec, "model_id", f"{dot}model_id")
        if model_id is not None and not MODEL_ID_RE.fullmatch(model_id):
            c.fail(f"{dot}model_id", "must look like 'organisation/repository'")
        elif spec.get("model_id") is None and spec.get("model_uri") is None:
            c.fail(path or "spec", "needs model_id (to download) or model_uri (a local copy)")
        hub = c.text(spec, "model_hub", f"{dot}model_hub", default="huggingface")
        if hub not in MODEL_HUBS:
            c.fail(f"{dot}model_hub", f"must be one of: {', '.join(MODEL_HUBS)}")
        revision = c.text(spec, "model_revision", f"{dot}model_revision")
        specs.append(
            EmbeddingModelSpec(
                model_id=model_id, model_uri=uri, model_hub=hub or "huggingface", model_revision=revision
            )
        )
    return specs


def parse_spec(model_type: str, source: str | bytes | dict[str, Any], *, builtin: bool = False) -> ModelSpec:
    """Parse a spec of `model_type` ('LLM', 'embedding' or 'rerank')."""
    kind = normalise_model_type(model_type)
    if kind == "LLM":
        return parse_llm(source, builtin=builtin)
    if kind == "embedding":
        return parse_embedding(source, builtin=builtin)
    return parse_rerank(source, builtin=builtin)


def guess_model_type(source: str | bytes | dict[str, Any]) -> ModelType:
    """Tell an embedding spec (it has `dimensions`) from a rerank spec (`type`, `max_tokens` or `language`
    without dimensions) from an LLM spec, for `xitui validate`."""
    data = _load_object(source)
    if "dimensions" in data:
        return "embedding"
    return "rerank" if {"type", "max_tokens", "language"} & set(data) else "LLM"
