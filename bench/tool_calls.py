"""Tool calls as agent libraries make them, many times over: malformed calls and server errors counted, and
what holding a forced call to its schema costs.

    python bench/tool_calls.py [--calls 200] [--model demo-smollm2-135m]

Through the openai SDK against xitui's server, the bundled SmolLM2 GGUF (4 slots), sampled at temperature 1
with a new seed each call (greedy would repeat one call 200 times):
  1. forced: `tool_choice` names the tool, whose parameters are pydantic's schema of a model with a nested
     model, an Enum and ranges (tests/support/pydantic_tools.py, the $defs pydantic-ai and instructor send);
     a call is malformed when its arguments do not validate into the model (target: 0, and 0 server errors);
  2. auto: the same tool offered, `tool_choice` auto, a question that asks for it; each answer is a call or
     text, and a call is malformed as above, or when the model opened one that was not read as a call (its
     marker left in the text). Issue 35 asks for 0: until auto calls are held from the moment a call opens,
     this counts what that leaves;
  3. cost: tokens/s of the forced calls against the same number of tokens written freely (the server's own
     `last_tokens_per_s`), one request at a time, interleaved (target >= 0.95x).
Only chat completions today; Anthropic's Messages and OpenAI's Responses join as they are served.
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ThreadPoolExecutor

import common  # noqa: F401  (puts the repository on the path)

from tests.support.pydantic_tools import Person, as_tools

QUESTION = "Record this person with the record_person tool: Ada Lovelace, 36, 1.65 m tall, likes blue, lives in London."
MARKERS = ("<tool_call>", "</tool_call>")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--model", default="demo-smollm2-135m")
    args = parser.parse_args()
    import openai
    from pydantic import ValidationError

    from xitui.client import Client

    server = common.Server('[server]\nwarm = ["none"]\n')
    try:
        uid = Client(server.url).launch_model(model_name=args.model, model_uid="tools", n_parallel=4)
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
        tool = as_tools()[0][1]
        messages = [{"role": "user", "content": QUESTION}]

        def call(seed: int, choice: object) -> str:
            try:
                done = sdk.chat.completions.create(model=uid, messages=messages, tools=[tool], tool_choice=choice,
                                                   temperature=1.0, seed=seed, max_tokens=200)
            except openai.APIStatusError as exc:
                return f"server error {exc.status_code}"
            message = done.choices[0].message
            if not message.tool_calls:
                opened = any(marker in (message.content or "") for marker in MARKERS)
                return "malformed: opened, not read" if opened else "text"
            try:
                Person.model_validate_json(message.tool_calls[0].function.arguments)
            except ValidationError:
                return "malformed: arguments"
            return "call"

        named = {"type": "function", "function": {"name": "record_person"}}
        with ThreadPoolExecutor(4) as pool:
            forced = list(pool.map(lambda seed: call(seed, named), range(args.calls)))
            auto = list(pool.map(lambda seed: call(seed, "auto"), range(args.calls)))

        rates: dict[str, list[float]] = {"forced": [], "free": []}
        client = Client(server.url)
        for seed in range(5):
            done = sdk.chat.completions.create(model=uid, messages=messages, tools=[tool], tool_choice=named,
                                               temperature=1.0, seed=seed, max_tokens=200)
            rates["forced"].append(client.describe_model(uid)["metrics"]["last_tokens_per_s"])
            tokens = done.usage.completion_tokens
            sdk.chat.completions.create(model=uid, messages=messages, temperature=1.0, seed=seed, max_tokens=tokens,
                                        extra_body={"ignore_eos": True})
            rates["free"].append(client.describe_model(uid)["metrics"]["last_tokens_per_s"])
    finally:
        server.stop()

    def counts(results: list[str]) -> str:
        return json.dumps({kind: results.count(kind) for kind in sorted(set(results))})

    print(f"{args.model}, chat completions, {args.calls} calls each, temperature 1, a seed each")
    print(f"forced: {counts(forced)} (target: all calls)")
    print(f"auto:   {counts(auto)} (target: no malformed)")
    forced_rate, free_rate = statistics.median(rates["forced"]), statistics.median(rates["free"])
    print(f"forced call tokens/s {forced_rate:.1f} against free {free_rate:.1f}: {forced_rate / free_rate:.2f}x "
          "(target >= 0.95x)")


if __name__ == "__main__":
    main()
