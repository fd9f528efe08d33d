"""The launch settings of every model the server ran, and which of them come back after a restart.

One JSON file in XITUI_HOME (`launches.json`), rewritten atomically on each change, so a crash leaves the
old file or the new one. Only the server writes it (one process), so no lock is needed beyond that.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from xitui.core.files import atomic_write

FILE_NAME = "launches.json"

#: Keys of a launch request that are not settings of the model (they say how to launch, not what).
_NOT_SETTINGS = ("force", "restore")


class LaunchMemory:
    """The launch settings of models marked to come back when the server starts (launches.json)."""

    def __init__(self, home: Path):
        self.path = home / FILE_NAME
        self.entries: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, dict):
            return {}
        return {uid: entry for uid, entry in models.items()
                if isinstance(entry, dict) and isinstance(entry.get("request"), dict)}

    def _write(self) -> None:
        data = {"version": 1, "models": self.entries}
        atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True).encode("utf-8"))

    def remember(self, uid: str, request: dict[str, Any], restore: bool) -> None:
        """A model launched with these settings; `restore` marks it to come back when the server starts.
        `request` holds only the launch fields the server knows (it checked them)."""
        settings = {k: v for k, v in request.items() if k not in _NOT_SETTINGS and v is not None}
        settings["model_uid"] = uid
        self.entries[uid] = {"request": settings, "restore": bool(restore), "launched_at": time.time()}
        self._write()

    def forget(self, uid: str) -> None:
        """The user stopped this model: it does not come back, and its settings are dropped."""
        if self.entries.pop(uid, None) is not None:
            self._write()

    def forget_model(self, model_type: str, model_name: str) -> None:
        """A model was unregistered: no launch of it is remembered any more."""
        kind = model_type.lower()
        gone = [uid for uid, entry in self.entries.items()
                if str(entry["request"].get("model_name", "")).lower() == model_name.lower()
                and str(entry["request"].get("model_type") or "LLM").lower() == kind]
        for uid in gone:
            del self.entries[uid]
        if gone:
            self._write()

    def is_marked(self, uid: str) -> bool:
        return bool(self.entries.get(uid, {}).get("restore"))

    def marked(self) -> list[tuple[str, dict[str, Any]]]:
        """(uid, launch request) of each model to bring back, oldest launch first."""
        found = [(e.get("launched_at") or 0, uid, e["request"]) for uid, e in self.entries.items() if e.get("restore")]
        return [(uid, dict(request)) for _, uid, request in sorted(found, key=lambda t: (t[0], t[1]))]
