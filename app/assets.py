"""Static files: fingerprinted URLs cached for a year, and compressed answers.

``static_url("css/app.css")`` is ``/static/css/app.css?v=<sha256 prefix>``: a changed file
gets a new URL, so browsers may keep each one forever (``immutable``). Answers are
compressed with Flask-Compress (zstd, br or gzip, as the browser asks).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from flask import Flask, current_app, request, url_for
from flask_compress import Compress

IMMUTABLE = "public, max-age=31536000, immutable"
COMPRESSED_TYPES = [
    "text/html",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/json",
    "image/svg+xml",
    "text/plain",
]


class Compression(Compress):
    """Flask-Compress, except for HTML that may reflect what the request sent.

    BREACH: a compressed page holding a secret (the CSRF token) next to attacker-chosen
    text leaks the secret through its size. Pages answering a GET without a query string
    reflect nothing, so only those are compressed.
    """

    def after_request(self, response):
        if response.mimetype == "text/html" and (request.method != "GET" or request.query_string):
            return response
        return super().after_request(response)


compress = Compression()


@functools.cache
def _fingerprint(folder: str, filename: str, mtime_ns: int) -> str:
    return hashlib.sha256((Path(folder) / filename).read_bytes()).hexdigest()[:12]


def static_url(filename: str) -> str:
    """The URL of a static file with its content's fingerprint (cached per file version)."""
    folder = current_app.static_folder
    path = Path(folder) / filename
    return url_for("static", filename=filename, v=_fingerprint(folder, filename, path.stat().st_mtime_ns))


def init_app(app: Flask) -> None:
    """Compression, the ``static_url`` template helper and long caching of fingerprinted files."""
    app.config.setdefault("COMPRESS_MIMETYPES", COMPRESSED_TYPES)
    app.config.setdefault("COMPRESS_MIN_SIZE", 500)
    app.config.setdefault("COMPRESS_BR_LEVEL", 6)  # level 4 (the default) sends htmx larger than gzip -6
    compress.init_app(app)
    app.add_template_global(static_url, "static_url")

    @app.after_request
    def cache_fingerprinted(response):
        if request.endpoint == "static" and request.args.get("v") and response.status_code in (200, 304):
            filename = request.view_args.get("filename", "")
            try:
                current = static_url(filename).rsplit("v=", 1)[1]
            except OSError:
                return response
            if request.args["v"] == current:  # an old fingerprint must not pin new content
                response.headers["Cache-Control"] = IMMUTABLE
        return response
