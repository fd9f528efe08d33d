"""A small HTTP server that answers like the Hugging Face Hub for a few local repositories.

huggingface_hub reads HF_ENDPOINT, so pointing it here exercises the real download code: repository
info, the file tree, HEAD for metadata and GET (with Range, for resumes) for the bytes. `delay` slows
the transfer down so that progress can be watched.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repos: dict[str, Path], delay: float = 0.0):
        self.repos = repos
        self.delay = delay
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                hub.handle(self, head=True)

            def do_GET(self) -> None:  # noqa: N802
                hub.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo: str) -> dict[str, Path]:
        root = self.repos[repo]
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}

    def handle(self, req: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlsplit(req.path).path)
        self.requests.append(f"{req.command} {path}")
        for repo in self.repos:
            if path.startswith(f"/api/models/{repo}/revision/"):
                siblings = [{"rfilename": name, "size": p.stat().st_size} for name, p in self.files(repo).items()]
                return self.send_json(req, {"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings,
                                            "private": False, "disabled": False, "gated": False})
            if path.startswith(f"/api/models/{repo}/tree/"):
                tree = [{"type": "file", "path": name, "size": p.stat().st_size, "oid": _oid(p)}
                        for name, p in self.files(repo).items()]
                return self.send_json(req, tree)
            prefix = f"/{repo}/resolve/"
            if path.startswith(prefix):
                _revision, _, name = path[len(prefix):].partition("/")
                file = self.files(repo).get(name)
                if file is None:
                    return self.send_error_json(req, 404, "Entry not found", "EntryNotFound")
                return self.send_file(req, file, head)
        self.send_error_json(req, 404, "Repository not found", "RepoNotFound")

    def send_json(self, req: BaseHTTPRequestHandler, data: object) -> None:
        body = json.dumps(data).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def send_error_json(self, req: BaseHTTPRequestHandler, status: int, message: str, code: str) -> None:
        body = json.dumps({"error": message}).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("X-Error-Code", code)
        req.send_header("X-Error-Message", message)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)

    def send_file(self, req: BaseHTTPRequestHandler, file: Path, head: bool) -> None:
        size = file.stat().st_size
        start = 0
        ranged = req.headers.get("Range")
        if ranged and ranged.startswith("bytes="):
            start = int(ranged[6:].split("-")[0] or 0)
        req.send_response(206 if start else 200)
        req.send_header("X-Repo-Commit", COMMIT)
        req.send_header("ETag", f'"{_oid(file)}"')
        req.send_header("Content-Length", str(size - start))
        if start:
            req.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        req.end_headers()
        if head:
            return
        with open(file, "rb") as fh:
            fh.seek(start)
            while block := fh.read(1 << 20):
                req.wfile.write(block)
                if self.delay:
                    time.sleep(self.delay)


def _oid(path: Path) -> str:
    digest = hashlib.sha1()
    digest.update(f"{path}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode())
    return digest.hexdigest()
