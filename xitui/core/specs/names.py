"""The shapes of names in specs, apart from the spec models so that probes can check them without pydantic."""

from __future__ import annotations

import re
from typing import Literal

ModelType = Literal["LLM", "embedding", "rerank"]
#: The model types a registration may have, in the order they are listed.
MODEL_TYPES: tuple[ModelType, ...] = ("LLM", "embedding", "rerank")

#: Whole names only: \Z, not $ (which lets a trailing newline through), and checked with fullmatch.
NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,99}\Z")
MODEL_ID_RE = re.compile(r"\A[A-Za-z0-9][\w.\-]*/[\w.\-]+\Z")
#: What an LLM spec may say its model does (Xinference 4's list). `hybrid`: reasoning that can be switched
#: off per request; `embed`: vectors from the LLM itself; `audio`, `omni`: sound in (refused at request time).
LLM_ABILITIES = ("generate", "chat", "tools", "vision", "reasoning", "hybrid", "embed", "audio", "omni")
