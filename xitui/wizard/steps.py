"""The questions, one small function per step; each reads its proposal from the draft and writes its answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xitui.core.errors import XituiError
from xitui.core.model_files.inspect import inspect_source
from xitui.core.specs import catalog
from xitui.core.specs.names import LLM_ABILITIES, MODEL_ID_RE, NAME_RE
from xitui.wizard.ask import Back, Choice, NoProposal
from xitui.wizard.context import Wizard
from xitui.wizard.machine import Jump, Step

# --- weights and type ---------------------------------------------------------------------------------


def inspect_into(w: Wizard, source: str, gguf_file: str | None = None, found: Any = None) -> None:
    """Read the source's files into the draft, and say what could not be read."""
    found = found or inspect_source(source, gguf_file)
    w.draft.source = source
    w.draft.load_inspection(found)
    if w.options.name:
        w.draft.values["model_name"] = w.options.name
        w.draft.origins["model_name"] = "--name"
    for note in found.notes:
        w.say(f"note: {note}", style="yellow")


def ask_source(w: Wizard) -> Any:
    from prompt_toolkit.completion import PathCompleter

    seen: dict[str, Any] = {}

    def check(text: str) -> str | None:
        try:
            seen[text.strip()] = inspect_source(text.strip())
        except XituiError as exc:
            return str(exc)
        return None

    proposal = w.draft.source or w.options.source
    answer = w.ask.text("Where are the weights? A .gguf file, a model folder or a Hub id", proposal,
                        field="source", validate=check, completer=PathCompleter(expanduser=True))
    if answer.strip() != w.draft.source or w.draft.inspection is None:
        inspect_into(w, answer.strip(), found=seen.get(answer.strip()))
    return None


_KIND_ORIGIN = {"gguf": "a GGUF file", "pytorch": "config.json", "sentence-transformers": "modules.json",
                "cross-encoder": "a cross-encoder's config", "hub": "the Hub repository"}

#: Why a source can only be served as the type it was found to be.
_ONLY_AS = {"gguf": "GGUF files run on llama.cpp as LLMs",
            "sentence-transformers": "a sentence-transformers folder is an embedding model",
            "cross-encoder": "a cross-encoder scores pairs of texts: it is a rerank model"}


def ask_model_type(w: Wizard) -> Any:
    found = w.draft.inspection
    origin = _KIND_ORIGIN.get(found.kind) if found else w.draft.origin("model_name")
    while True:
        answer = w.ask.select("Model type", [Choice("LLM", "LLM", "generate and chat"),
                                             Choice("embedding", "embedding", "vectors for search"),
                                             Choice("rerank", "rerank", "passages ranked against a query")],
                              w.draft.model_type, origin=origin, field="model type")
        if answer == w.draft.model_type:
            return None
        if found is None or found.kind != "pytorch" or answer == "rerank":
            why = _ONLY_AS.get(found.kind if found else "", "a transformers folder is an LLM or an embedding model")
            if found is not None and found.kind == "pytorch":
                why = "a causal language model's folder is no reranker (a cross-encoder's folder is)"
            w.say(f"this source is served as {w.draft.model_type}: {why}", style="red")
            if w.ask.yes:
                raise NoProposal("--yes: the model type does not fit the source")
            continue
        if answer == "embedding":
            _switch_to_embedding(w)
        else:
            inspect_into(w, w.draft.source or found.source)
        return None


def _switch_to_embedding(w: Wizard) -> None:
    """A transformers folder served as an embedding model (sentence-transformers pools its outputs)."""
    found = w.draft.inspection
    assert found is not None
    facts = found.facts
    spec = {"version": 2, "model_name": w.draft.get("model_name"), "language": w.draft.get("model_lang", ["en"]),
            "model_specs": [{"model_format": "pytorch", "quantization": "none",
                             **{k: v for k, v in w.draft.get("model_specs", [{}])[0].items()
                                if k in ("model_id", "model_uri")}}]}
    if facts.get("embedding_length"):
        spec["dimensions"] = facts["embedding_length"]
    if facts.get("context_length"):
        spec["max_tokens"] = min(facts["context_length"], 512)
    w.draft.model_type = "embedding"
    w.draft.values = spec
    w.draft.origins.update(dimensions="config.json (hidden_size)", max_tokens="config.json, at most 512")


def _gguf_choices(w: Wizard) -> bool:
    found = w.draft.inspection
    return bool(found and found.kind == "gguf" and len(found.gguf_files) > 1)


def ask_gguf_file(w: Wizard) -> Any:
    from pathlib import Path

    found = w.draft.inspection
    assert found is not None
    folder = Path(found.facts["file"]).parent
    current = Path(found.facts["file"]).name
    choices = [Choice(name, name, f"{(folder / name).stat().st_size / 2**20:,.0f} MiB") for name in found.gguf_files]
    answer = w.ask.select("Which GGUF file? (the others with the same name pattern become further quantizations)",
                          choices, current, origin="the folder", field="GGUF file")
    if answer != current:
        inspect_into(w, str(folder), answer)
    return None


def _needs_weights(w: Wizard) -> bool:
    """The files did not say the format, size or quantization (a Hub id offline, say)."""
    if w.draft.model_type != "LLM":
        return False
    entries = w.draft.get("model_specs") or []
    return not entries or any(not e.get(k) for e in entries for k in ("model_format", "model_size_in_billions"))


def ask_weights(w: Wizard) -> Any:
    """Format, size, quantizations and (GGUF) the file name template, when the files could not say."""
    from xitui.core.specs.spec import GGUF_QUANT_RE, PYTORCH_QUANTIZATIONS, SIZE_RE

    entries = w.draft.get("model_specs") or [{}]
    first = entries[0]
    fmt = w.ask.select("Weights format", [Choice("ggufv2", "ggufv2", "GGUF files, run by llama.cpp"),
                                          Choice("pytorch", "pytorch", "safetensors, run by transformers")],
                       first.get("model_format"), field="model_format")

    def size_problem(text: str) -> str | None:
        text = text.strip().replace(".", "_")
        return None if SIZE_RE.fullmatch(text) and text.strip("0_") else "billions of parameters, e.g. 7, 0.5 or 1_8"

    size = w.ask.text("Size in billions of parameters", None if first.get("model_size_in_billions") is None
                      else str(first["model_size_in_billions"]), field="model_size_in_billions", validate=size_problem)
    size_value: int | str = int(size) if size.strip().isdigit() else size.strip().replace(".", "_")

    def quant_problem(text: str) -> str | None:
        for quant in (q.strip() for q in text.split(",")):
            if fmt == "pytorch" and quant not in PYTORCH_QUANTIZATIONS:
                return f"pytorch quantizations are {', '.join(PYTORCH_QUANTIZATIONS)}"
            if fmt == "ggufv2" and not GGUF_QUANT_RE.fullmatch(quant):
                return f"{quant!r} is not a quantization name such as Q4_K_M"
        return None

    known = [e.get("quantization") for e in entries if e.get("quantization")]
    proposal = ", ".join(known) if known and (fmt == "ggufv2" or set(known) <= set(PYTORCH_QUANTIZATIONS)) else (
        "none" if fmt == "pytorch" else None)
    quants = w.ask.text("Quantizations (comma-separated)", proposal, field="quantization", validate=quant_problem)
    template = None
    if fmt == "ggufv2" and not str(first.get("model_uri") or "").endswith(".gguf"):
        def template_problem(text: str) -> str | None:
            return None if text.endswith(".gguf") and "/" not in text else "a file name such as m-{quantization}.gguf"

        template = w.ask.text("GGUF file name ({quantization} stands for the quantization)",
                              first.get("model_file_name_template"), field="model_file_name_template",
                              validate=template_problem)
    keep = {k: v for k, v in first.items() if k in ("model_id", "model_uri", "model_hub", "model_revision")}
    w.draft.values["model_specs"] = [
        {"model_format": fmt, "model_size_in_billions": size_value, "quantization": quant,
         **({"model_file_name_template": template} if template else {}), **keep}
        for quant in (q.strip() for q in quants.split(",")) if quant
    ]
    return None


# --- names and details --------------------------------------------------------------------------------


def name_problem(name: str) -> str | None:
    if not NAME_RE.fullmatch(name):
        return "starts with a letter or digit, then letters, digits, '_' or '-' (100 at most)"
    if catalog.is_builtin_name(name):
        return f"{name!r} is a builtin model; choose another name"
    return None


def ask_name(w: Wizard) -> Any:
    while True:
        answer = w.ask.text("Model name", w.draft.get("model_name"), origin=w.draft.origin("model_name"),
                            field="model_name", validate=name_problem)
        w.draft.set("model_name", answer)
        w.draft.replace = False
        if not w.options.needs_server:
            return None
        taken = w.is_registered(w.draft.model_type or "LLM", answer)
        if taken is None:
            w.say(f"note: the server cannot be reached ({w.server_note}); the name is not checked", style="yellow")
            return None
        if not taken:
            return None
        if w.ask.yes:
            if w.options.replace:
                w.draft.replace = True
                return None
            raise NoProposal(f"--yes: model_name {answer!r} is already registered on the server; "
                             "pass --name NAME or --replace")
        try:
            choice = w.ask.select(f"{answer!r} is already registered on the server",
                                  [Choice("choose another name", "rename"),
                                   Choice(f"replace the registration of {answer}", "replace")], "rename")
        except Back:
            continue  # back to the name
        if choice == "replace":
            w.draft.replace = True
            return None
        w.draft.set("model_name", None)


def _projector_choices(w: Wizard) -> bool:
    found = w.draft.inspection
    return found is not None and len(found.facts.get("projectors") or []) > 1


def ask_projector(w: Wizard) -> Any:
    """Several projectors beside the model (f16, f32, bf16 of the same one, as hubs ship them): which one."""
    from pathlib import Path

    found = w.draft.inspection
    assert found is not None
    folder = Path(found.facts["file"]).parent
    names = found.facts["projectors"]
    current = (w.draft.get("model_specs") or [{}])[0].get("multimodal_projectors", names[:1])[0]
    choices = [Choice(name, name, f"{(folder / name).stat().st_size / 2**20:,.1f} MiB") for name in names]
    answer = w.ask.select("Which projector? (it turns images into the model's input; they all fit this model)",
                          choices, current, origin="the folder", field="multimodal projector")
    for entry in w.draft.get("model_specs") or []:
        entry["multimodal_projectors"] = [answer]
    return None


def _is_llm(w: Wizard) -> bool:
    return w.draft.model_type == "LLM"


def _is_embedding(w: Wizard) -> bool:
    return w.draft.model_type == "embedding"


def _reads_pieces(w: Wizard) -> bool:
    """Embedding and rerank models: sentence-transformers models with a longest input."""
    return w.draft.model_type in ("embedding", "rerank")


def ask_family(w: Wizard) -> Any:
    from prompt_toolkit.completion import FuzzyWordCompleter

    found = w.draft.inspection
    first = list(found.facts.get("families", [])) if found else []
    names = first + ["other"] + sorted(n for n in catalog.raw_llms() if n not in first)

    def check(text: str) -> str | None:
        if text != "other" and not catalog.is_builtin_family(text):
            return f"{text!r} is not a builtin family: pick one from the list (Tab) or 'other'"
        return None

    answer = w.ask.text("Family (Tab lists them; its prompt style applies unless you choose a chat format)",
                        w.draft.get("model_family", "other"), origin=w.draft.origin("model_family"),
                        field="model_family", validate=check, completer=FuzzyWordCompleter(names))
    w.draft.set("model_family", answer)
    return None


#: What each ability means, as the abilities question shows it.
ABILITY_NOTES = {"generate": "complete text", "chat": "conversations (needs a chat format)", "tools": "function calls",
                 "vision": "images", "reasoning": "thinks before answering",
                 "hybrid": "thinking that a request can switch off", "embed": "vectors from the LLM itself (GGUF)",
                 "audio": "sound in (a Xinference cluster serves it; xitui refuses it)",
                 "omni": "text, images and sound (xitui serves the text)"}


def ask_abilities(w: Wizard) -> Any:
    answer = w.ask.checkbox("Abilities", [Choice(a, a, ABILITY_NOTES[a]) for a in LLM_ABILITIES],
                            w.draft.get("model_ability", ["generate"]), origin=w.draft.origin("model_ability"),
                            field="model_ability")
    if not {"generate", "chat"} & set(answer):
        w.say("an LLM needs generate or chat", style="red")
        return Jump("abilities")
    w.draft.set("model_ability", answer)
    return None


def ask_languages(w: Wizard) -> Any:
    key = "model_lang" if _is_llm(w) else "language"
    answer = w.ask.text("Languages (comma-separated codes)", ", ".join(w.draft.get(key, ["en"])),
                        origin=w.draft.origin(key), field=key)
    w.draft.set(key, [part.strip() for part in answer.split(",") if part.strip()] or ["en"])
    return None


def _number_step(key: str, message: str, maximum: int = 10_000_000) -> Any:
    def ask(w: Wizard) -> Any:
        answer = w.ask.number(message, w.draft.get(key), origin=w.draft.origin(key), field=key, maximum=maximum)
        w.draft.set(key, answer)
        return None

    return ask


def ask_description(w: Wizard) -> Any:
    answer = w.ask.text("Description (- for none)", w.draft.get("model_description"),
                        origin=w.draft.origin("model_description"), field="model_description", required=False)
    w.draft.set("model_description", answer)
    return None


def ask_model_id(w: Wizard) -> Any:
    entries = w.draft.get("model_specs") or [{}]
    local = any(e.get("model_uri") for e in entries)

    def check(text: str) -> str | None:
        return None if MODEL_ID_RE.fullmatch(text) else "looks like 'organisation/repository'"

    message = "Hub id (model_id)" + (" — optional, the files are local; - for none" if local else "")
    answer = w.ask.text(message, w.draft.model_id, origin=w.draft.origin("model_id"), field="model_id",
                        validate=check, required=not local)
    w.draft.set_model_id(answer or None)
    return None


# --- the list -------------------------------------------------------------------------------------------


def has_chat(w: Wizard) -> bool:
    return w.draft.model_type == "LLM" and "chat" in (w.draft.get("model_ability") or [])


def _later(module: str, name: str) -> Callable[[Wizard], Any]:
    """A step whose module is imported when it runs (the preview, review and finish need pydantic and
    rich: importing them up front would delay the first question)."""

    def run(w: Wizard) -> Any:
        import importlib

        return getattr(importlib.import_module(f"xitui.wizard.{module}"), name)(w)

    return run


def steps() -> list[Step]:
    ask_chat_format = _later("chat_format", "ask_chat_format")
    review = _later("review", "review")
    finish = _later("finish", "finish")
    spec_entry = r"^model_specs\[\d+\]\."
    return [
        Step("source", ask_source, lambda w: not (w.options.source or w.options.from_spec),
             fields=(r"^version", r"^model_specs"), label="weights' location", editable_when=lambda w: True),
        Step("model_type", ask_model_type, lambda w: not w.options.from_spec),
        Step("gguf_file", ask_gguf_file, _gguf_choices),
        Step("projector", ask_projector, _projector_choices, fields=(spec_entry + "multimodal_projectors",),
             label="multimodal projector"),
        Step("weights", ask_weights, _needs_weights, label="format, size and quantizations", editable_when=_is_llm,
             fields=(spec_entry + "(model_format|model_size_in_billions|quantization|model_file_name_template)",)),
        Step("name", ask_name, fields=(r"^model_name",), label="model name"),
        Step("family", ask_family, _is_llm, fields=(r"^model_family",), label="family"),
        Step("abilities", ask_abilities, _is_llm, fields=(r"^model_ability",), label="abilities"),
        Step("languages", ask_languages, fields=(r"^(model_lang|language)",), label="languages"),
        Step("context_length", _number_step("context_length", "Context length (tokens)"), _is_llm,
             fields=(r"^context_length",), label="context length"),
        Step("dimensions", _number_step("dimensions", "Dimensions of a vector"), _is_embedding,
             fields=(r"^dimensions",), label="dimensions"),
        Step("max_tokens", _number_step("max_tokens", "Most tokens per input"), _reads_pieces,
             fields=(r"^max_tokens",), label="max tokens"),
        Step("description", ask_description, _is_llm, fields=(r"^model_description",), label="description"),
        Step("model_id", ask_model_id, fields=(spec_entry + "model_id", r"needs model_id"), label="Hub id"),
        Step("chat_format", ask_chat_format, has_chat, fields=(r"^(prompt_style|chat_template|stop)",),
             label="chat format"),
        Step("review", review),
        Step("finish", finish),
    ]

