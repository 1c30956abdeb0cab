"""A minimal HTTP client for 127.0.0.1: one new connection per request, timed end to end."""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass

HTMX = {"HX-Request": "true"}
TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Answer:
    """One request's outcome: when it started, how long it took, what came back."""

    path: str
    started: float  # time.monotonic() when the request began (comparable across processes)
    seconds: float
    status: int | None
    body: bytes
    header_bytes: int
    headers: dict
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


def fetch(port: int, path: str, headers: dict | None = None, method: str = "GET", body: bytes | None = None) -> Answer:
    """Send one request to 127.0.0.1:``port`` and read the whole answer."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_SECONDS)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        payload = response.read()
        seconds = time.monotonic() - started
        header_list = response.getheaders()
        # Status line plus "Name: value\r\n" lines and the blank line: the bytes on the wire.
        header_bytes = len(f"HTTP/1.1 {response.status} {response.reason}\r\n") + 2
        header_bytes += sum(len(name) + len(value) + 4 for name, value in header_list)
        error = None if response.status == 200 else f"HTTP {response.status}"
        return Answer(path, started, seconds, response.status, payload, header_bytes, dict(header_list), error)
    except (OSError, http.client.HTTPException) as exc:
        return Answer(path, started, time.monotonic() - started, None, b"", 0, {}, f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()
