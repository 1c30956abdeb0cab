"""Real notification receivers on 127.0.0.1: an HTTP server (webhooks, pings) and an SMTP server."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller

from tests.support.server import free_port


def notify_idle() -> bool:
    """No notification work is running in this process (the positive signal that every send is done)."""
    return not any(thread.name.startswith("notify") for thread in threading.enumerate())


@dataclass(frozen=True)
class Received:
    """One HTTP request a receiver got."""

    method: str
    path: str
    query: dict
    body: bytes
    received_at: float = field(default_factory=time.time)  # wall clock, when the request line arrived

    def json(self):
        import json

        return json.loads(self.body)


class HttpReceiver:
    """A threaded HTTP server that records every request; ``hang=True`` never answers (until stopped)."""

    def __init__(self, hang: bool = False, status: int = 200) -> None:
        self.requests: list[Received] = []
        self.hang = hang
        self.status = status
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                arrived = time.time()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                receiver.requests.append(Received(self.command, parts.path, parse_qs(parts.query), body, arrived))
                if receiver.hang:
                    receiver.release.wait(60)
                    return
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = do_HEAD = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def posts(self, path: str = "/hook") -> list[Received]:
        return [request for request in self.requests if request.path == path]


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1 keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.messages.append(envelope.content.decode("utf-8", "replace"))
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    def mailto(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=backups@example.org&to=ops@example.org&mode=insecure"
