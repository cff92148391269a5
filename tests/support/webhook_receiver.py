"""A real HTTP receiver for outgoing webhooks, on loopback, for tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """What the handler should answer, and what it has been sent."""

    url: str
    status: int = 204
    answer_body: bytes = b""
    answer_headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def types(self) -> list[str]:
        """The ``type`` of each JSON body received, in order."""
        return [r.json["type"] for r in self.requests]


class _Server(ThreadingHTTPServer):
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The sender hangs up on slow answers on purpose; stay quiet about it."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        receiver.requests.append(Recorded(self.path, dict(self.headers.items()), body))
        if receiver.delay_s:
            receiver.release.wait(receiver.delay_s)  # set at teardown, so no thread lingers
        self.send_response(receiver.status)
        for name, value in receiver.answer_headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(receiver.answer_body)))
        self.end_headers()
        self.wfile.write(receiver.answer_body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def running_receiver(*, status: int = 204) -> Iterator[Receiver]:
    """A receiver answering ``status`` until the block ends."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.daemon_threads = False  # server_close() joins the handler threads
    server.receiver = Receiver(
        url=f"http://127.0.0.1:{server.server_address[1]}/hooks", status=status
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
