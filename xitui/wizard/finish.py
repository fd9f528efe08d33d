"""The last step: save the spec, register it (persisted or not), launch it, and try one prompt.

What it does is journaled: Ctrl-C (or a failure) before it is through undoes all of it, so a cancelled
wizard leaves nothing saved or registered. The test prompt comes after: Ctrl-C there only stops the answer.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from xitui.core.errors import XituiError
from xitui.core.safe_text import StreamFilter, safe
from xitui.wizard.ask import Back, Choice
from xitui.wizard.context import Wizard

ACTIONS = [("save", "save the spec to a file"), ("register", "register it on the server"),
           ("persist", "keep the registration across server restarts (persist)"),
           ("launch", "launch it now and try a prompt"),
           ("check", "check it: try live each thing it promises, and fix what fails (xitui check, ~1 min)")]


def finish(w: Wizard) -> Any:
    o = w.options
    while True:
        if w.ask.yes:
            chosen = {"save": o.output is not None, "register": bool(o.register or o.persist or o.launch or o.check),
                      "persist": o.persist, "launch": o.launch, "check": o.check}
        else:
            proposal = ["save", "register", "persist", "launch"]
            if o.register is False:
                proposal = ["save"]
            answer = w.ask.checkbox("What now?", [Choice(label, key) for key, label in ACTIONS], proposal,
                                    at_least_one=False)
            chosen = {key: key in answer for key, _ in ACTIONS}
            if (chosen["persist"] or chosen["launch"] or chosen["check"]) and not chosen["register"]:
                chosen["register"] = True
                w.say("(registering too: persisting, launching and checking need a registration)", style="dim")
        path: Path | None = None
        if chosen["save"]:
            try:
                path = ask_path(w)
            except Back:
                continue
        break
    if not any(chosen.values()):
        w.say("nothing saved or registered")
        return None
    carry_out(w, chosen, path)
    w.committed = True
    if w.launched_uid and (not w.ask.yes or o.test_prompt):
        try_prompt(w, w.launched_uid)
    if chosen["check"]:
        check_spec(w, path)
    return None


def ask_path(w: Wizard) -> Path:
    default = w.options.output or Path(f"{w.draft.get('model_name')}.json")
    while True:
        answer = w.ask.text("Save the spec to", str(default), field="output file").strip()
        if not answer:  # only blanks: a file named so is never what was meant
            w.say("name a file", style="red")
            continue
        path = Path(answer).expanduser()
        if path.is_dir():
            w.say(f"{path} is a folder: name a file", style="red")
            if w.ask.yes:
                raise XituiError(f"{path} is a folder: --output names the file to write")
            continue
        if not path.exists():
            return path
        if w.ask.yes:
            raise XituiError(f"{path} exists: the wizard never overwrites without asking; remove it or choose "
                             "another --output")
        replace = w.ask.yes_no(f"{path} exists: overwrite it?", False)
        if replace is True:
            return path
        default = path


def carry_out(w: Wizard, chosen: dict[str, bool], path: Path | None) -> None:
    """Save, register, launch; each undoable until the wizard is through."""
    spec = w.draft.spec()
    name = spec["model_name"]
    model_type = w.draft.model_type or "LLM"
    text = json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
    if path is not None:
        from xitui.core.files import atomic_write

        before = path.read_bytes() if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text.encode("utf-8"))
        w.journal.append(lambda: atomic_write(path, before) if before is not None else path.unlink(missing_ok=True))
        w.say(f"saved {path}")
    if chosen["register"]:
        client = w.client()
        if w.draft.replace:
            old = client.get_model_registration(model_type, name)
            client.unregister_model(model_type, name)
            old.pop("is_builtin", None)
            w.journal.append(lambda: client.register_model(model_type, json.dumps(old), persist=True))
        client.register_model(model_type, json.dumps(spec), persist=chosen["persist"])
        w.journal.append(lambda: client.unregister_model(model_type, name))
        w.say(f"registered {name} ({model_type}{', persisted' if chosen['persist'] else ''}) on {client.base_url}")
    if chosen["launch"]:
        launch(w, spec, model_type)


def launch(w: Wizard, spec: dict[str, Any], model_type: str) -> None:
    from xitui.client.launching import launch_and_wait
    from xitui.terminal.output import launch_progress

    client = w.client()
    name = spec["model_name"]
    entry = (spec.get("model_specs") or [{}])[0]
    kwargs: dict[str, Any] = {"model_name": name, "model_type": model_type}
    if model_type == "LLM":
        kwargs.update(model_format=entry.get("model_format"), quantization=entry.get("quantization"),
                      model_size_in_billions=entry.get("model_size_in_billions"))
    start = time.monotonic()
    with launch_progress(f"launching {name}", None if w.ask.yes else w.console) as on_progress:
        uid = launch_and_wait(client, on_progress, **kwargs)
    w.launched_uid = uid
    w.journal.append(lambda: client.terminate_model(uid))
    w.say(f"launched {uid} in {time.monotonic() - start:.1f} s")


def try_prompt(w: Wizard, uid: str) -> None:
    """One prompt whose answer streams in, with time to first token and tokens/s; Ctrl-C stops it."""
    from xitui.client.handles import ChatModelHandle, GenerateModelHandle

    client = w.client()
    handle = client.get_model(uid)
    if hasattr(handle, "rerank"):
        _try_rerank(w, uid, handle)
        return
    if hasattr(handle, "create_embedding"):
        sample = w.options.test_prompt or "The quick brown fox jumps over the lazy dog."
        start = time.monotonic()
        vector = handle.create_embedding(sample)["data"][0]["embedding"]
        w.say(f"embedded {sample!r}: {len(vector)} dimensions in {(time.monotonic() - start) * 1000:.0f} ms")
        _next_steps(w, uid, embedding=True)
        return
    assert isinstance(handle, GenerateModelHandle)  # neither embedding nor rerank: a model that continues text
    chat = isinstance(handle, ChatModelHandle)
    proposal = w.options.test_prompt or ("Say hello in one short sentence." if chat else "The capital of France is")
    try:
        answer = w.ask.text("Try a prompt (- to skip)", proposal, field="test prompt", required=False)
    except Back:  # everything is done by now: going back means skipping the try
        answer = ""
    if not answer:
        _next_steps(w, uid)
        return
    config = {"stream": True, "max_tokens": 64, "temperature": 0}
    start = time.monotonic()
    answered = (handle.chat([{"role": "user", "content": answer}], generate_config=config)
                if isinstance(handle, ChatModelHandle) else handle.generate(answer, generate_config=config))
    assert not isinstance(answered, dict)  # "stream": True: the chunks
    stream = answered
    first: float | None = None
    tokens = 0
    usage: dict[str, Any] = {}
    shown = StreamFilter()  # the model's answer, made safe as it streams
    try:
        for chunk in stream:
            choice = (chunk.get("choices") or [{}])[0]
            piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
            if piece:
                first = first or time.monotonic()
                tokens += 1
                w.console.print(shown.feed(piece), end="", highlight=False, markup=False)
            usage = chunk.get("usage") or usage
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            if isinstance(stream, Generator):  # the client's streams are: closing one ends the request
                stream.close()
        w.say("\n(stopped)")
    w.console.print()
    count = usage.get("completion_tokens") or tokens
    if first is not None:
        elapsed = max(time.monotonic() - first, 1e-6)
        rate = (count - 1) / elapsed if count > 1 else 0.0
        w.say(f"{count} tokens, first after {(first - start) * 1000:.0f} ms, {rate:.1f} tokens/s", style="dim")
    _next_steps(w, uid)


#: The wizard's try of a rerank model: a question, the passage that answers it, and two that do not.
RERANK_SAMPLE = ("Where does the fox live?",
                 ["The old bridge in Prague was built in 1357.", "The fox lives in the forest and eats berries.",
                  "Bread is made of flour, water and salt."])


def _try_rerank(w: Wizard, uid: str, handle: Any) -> None:
    query, documents = (w.options.test_prompt or RERANK_SAMPLE[0]), RERANK_SAMPLE[1]
    start = time.monotonic()
    results = handle.rerank(documents, query)["results"]
    w.say(f"ranked 3 passages for {query!r} in {(time.monotonic() - start) * 1000:.0f} ms:")
    for rank, result in enumerate(results, 1):
        w.say(f"  {rank}. {result['relevance_score']:.3f}  {documents[result['index']]}")
    w.say(f"next: xitui rerank --model-uid {uid} \"a question\" \"a passage\" \"another passage\"", style="dim")


def _next_steps(w: Wizard, uid: str, embedding: bool = False) -> None:
    if embedding:
        w.say(f"next: xitui embed --model-uid {uid} \"some text\"", style="dim")
    else:
        w.say(f"next: xitui chat --model-uid {uid}   or   xitui generate --model-uid {uid}", style="dim")


def check_spec(w: Wizard, path: Path | None) -> None:
    """`xitui check` on what was just registered (on the launched model, else one launched for it); where a
    row fails, its fix applied to the spec, registered in its place and saved over the file, after a yes."""
    from rich.table import Table

    from xitui.client.check import check, fix_text, register_fixed

    client = w.client()
    spec = w.draft.spec()
    name, model_type = spec["model_name"], w.draft.model_type or "LLM"
    try:
        with w.console.status(f"checking {name}") as status:
            report = check(client, name, model_type, said=lambda what: status.update(f"{name}: {what}"))
    except KeyboardInterrupt:
        w.say("(check stopped)")
        return
    table = Table("check", "result", "figure", "likely cause", "fix", title=report.summary)
    for row in report.rows:
        table.add_row(*(safe(cell) for cell in (row.name, row.status if row.status != "fail" else "FAIL", row.figure,
                                                row.cause or "-", row.fix_text)))
    w.console.print(table)
    if not report.fixes:
        return
    fixes = fix_text(report.fixes)
    if w.ask.yes:
        w.say(f"to apply the fix ({fixes}): xitui check {name} --fix", style="dim")
        return
    if w.ask.yes_no(f"Apply the fix ({fixes}) and register the corrected spec?", True) is not True:
        w.say(f"left as it was; later: xitui check {name} --fix", style="dim")
        return
    corrected = register_fixed(client, model_type, name, report.fixes, base=spec)
    if path is not None:
        from xitui.core.files import atomic_write

        atomic_write(path, (json.dumps(corrected, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        w.say(f"saved the corrected spec to {path}")
    w.say(f"registered the corrected {name}")


def undo(w: Wizard) -> None:
    """Take back what the finish step did, newest first (Ctrl-C before it was through)."""
    while w.journal:
        action = w.journal.pop()
        with contextlib.suppress(Exception):
            action()
