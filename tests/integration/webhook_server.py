"""A webhook receiver on 127.0.0.1 for the alert tests: records every POST, and answers by path
(/fail: 500, /hang: no answer, /flaky...: 503 twice then 200, /tg-refuse: Telegram's refusal)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class Received:
    path: str
    content_type: str
    body: bytes

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.body)  # type: ignore[no-any-return]

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class WebhookServer:
    port: int
    received: list[Received] = field(default_factory=list)
    release_hang: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(state: WebhookServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append(Received(self.path, self.headers.get("Content-Type", ""), body))
            if self.path.startswith("/hang"):
                state.release_hang.wait(timeout=10)
                return
            if self.path.startswith("/flaky") and sum(r.path == self.path for r in state.received) <= 2:
                self._answer(503, b"busy", "text/plain")  # the first two tries of each flaky path fail
            elif self.path.startswith("/fail"):
                self._answer(500, b"internal error", "text/plain")
            elif self.path.startswith("/tg-refuse"):
                self._answer(400, b'{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}')
            elif "/bot" in self.path:
                self._answer(200, b'{"ok":true,"result":{}}')
            else:
                self._answer(200, b"ok", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            return

    return Handler


@contextmanager
def running_webhook() -> Iterator[WebhookServer]:
    state = WebhookServer(port=0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    server.block_on_close = False  # type: ignore[attr-defined]
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release_hang.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
