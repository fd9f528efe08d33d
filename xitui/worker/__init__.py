"""The worker process: one per launched model. The server's supervisor talks to it over pipes.

Protocol (JSON, one object per line). The supervisor writes the launch settings as the first line on
stdin, then requests: ``{"id": 1, "op": "generate"|"chat"|"embed"|"cancel", ...}``. The worker answers
on its protocol pipe with events: ``{"event": "progress"|"ready"|"error", ...}`` while loading, then per
request ``{"id": 1, "text": "..."}`` pieces and one ``{"id": 1, "done": {...}}``, ``{"id": 1, "result":
{...}}`` or ``{"id": 1, "error": "...", "status": 400}``. The worker exits when stdin closes, so it never
outlives its server.
"""
