"""A Bodhi releases API on 127.0.0.1 that serves a recorded answer, as Bodhi would.

``GET /releases/?state=...&rows_per_page=N&page=P`` filters the recorded releases by state
and pages them (``rows_per_page`` capped at ``max_rows``, like Bodhi's own cap), answering
Bodhi's envelope ``{"releases", "page", "pages", "rows_per_page", "total"}``. ``statuses``
queues error answers to give first (to exercise retries); ``requests`` lists every query.
"""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

RECORDED = Path(__file__).parents[1] / "fixtures" / "bodhi" / "releases-f42-branched.json"


class BodhiServer:
    def __init__(self, recorded: Path = RECORDED, *, max_rows: int = 100) -> None:
        self.releases: list[dict[str, Any]] = json.loads(recorded.read_text())["releases"]
        self.max_rows = max_rows
        self.statuses: list[int] = []
        self.requests: list[dict[str, list[str]]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(query)
            if self.statuses:
                return self.statuses.pop(0), {"status": "error", "errors": []}
        states = set(query.get("state", []))
        chosen = [r for r in self.releases if not states or r["state"] in states]
        rows = min(int(query.get("rows_per_page", ["20"])[0]), self.max_rows)
        page = int(query.get("page", ["1"])[0])
        pages = max(1, math.ceil(len(chosen) / rows))
        body = {
            "releases": chosen[(page - 1) * rows : page * rows],
            "page": page,
            "pages": pages,
            "rows_per_page": rows,
            "total": len(chosen),
        }
        return 200, body

    def start(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/releases/":
                    status, body = 404, {"errors": [{"description": "not found"}]}
                else:
                    status, body = owner.answer(parse_qs(parts.query))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
