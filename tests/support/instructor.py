"""instructor, run as its users run it: in a venv of its own (scripts/install all,test puts it in
.venv/instructor; it pins rich<15 and jiter<0.15, below xitui's), a script that asks a server for a Person."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import ROOT

PYTHON = ROOT / ".venv" / "instructor" / "bin" / "python"

SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import instructor, openai
from tests.support.pydantic_tools import Person

url, uid, mode = sys.argv[2:5]
client = instructor.from_openai(openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0),
                                mode=getattr(instructor.Mode, mode))
person = client.chat.completions.create(
    model=uid, response_model=Person, max_retries=1, temperature=0, max_tokens=200,
    messages=[{"role": "user", "content": "Record Ada, 36, 1.7 m tall, likes blue, lives in London."}])
print(json.dumps({"type": type(person).__name__, "person": person.model_dump(mode="json")}))
"""


def ask_for_a_person(url: str, uid: str, mode: str) -> dict:
    """instructor's `create(response_model=Person)` in `mode` (TOOLS, JSON_SCHEMA...) with one attempt (no
    re-asking): what it gave back, or the test fails with instructor's own error."""
    if not PYTHON.exists():
        pytest.skip(f"instructor is not in {PYTHON.parent.parent}: scripts/install all,test installs it")
    ran = subprocess.run([str(PYTHON), "-c", SCRIPT, str(ROOT), url, uid, mode], capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    return json.loads(ran.stdout.strip().splitlines()[-1])
