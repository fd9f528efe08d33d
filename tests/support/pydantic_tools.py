"""What agent libraries send as a tool: pydantic's schema of a model with a nested model, an Enum and a range
(`$defs`, `$ref`, `minimum`/`maximum`), as pydantic-ai's output tool and instructor's TOOLS mode send it, and
as the openai SDK's `pydantic_function_tool` writes it (strict: every field required, no extra keys)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field


class Colour(str, Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Address(BaseModel):
    city: str = Field(max_length=40)


class Person(BaseModel):
    name: str = Field(max_length=40)
    age: int = Field(ge=0, le=150)
    height: float = Field(gt=0.5, lt=2.5)
    colour: Colour
    home: Address


def as_tools() -> list[tuple[str, dict[str, Any]]]:
    """(how it was made, the tool) for Person: pydantic's own schema, and the openai SDK's strict one."""
    import openai

    plain = {"type": "function", "function": {"name": "record_person", "description": "Record a person",
                                              "parameters": Person.model_json_schema()}}
    return [("pydantic", plain), ("openai-strict", openai.pydantic_function_tool(Person, name="record_person"))]
