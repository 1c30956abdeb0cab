"""5. Page weight: the Settings page and every asset it loads, as the bytes actually sent.

Requested as a browser does (``Accept-Encoding: br, gzip``); ``sent_bytes`` is each body
as it came over the wire (compressed when the server compressed it). ``gzip_bytes`` is
kept for comparison with earlier results: the body at ``gzip -6``.
"""

from __future__ import annotations

import gzip
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import brotli

from bench.client import fetch

CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)")


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "link" and attributes.get("href"):
            rel = (attributes.get("rel") or "").lower().split()
            if {"stylesheet", "icon", "preload", "modulepreload", "manifest"} & set(rel):
                self.urls.append(attributes["href"])
        elif tag in ("script", "img") and attributes.get("src"):
            self.urls.append(attributes["src"])


def measure_page_weight(port: int, page: str = "/settings") -> dict:
    """Raw and gzip bytes of the page and its assets (CSS url() references included)."""
    items = []
    external: list[str] = []  # other origins are never fetched (loads go to 127.0.0.1 only)
    pending = [page]
    seen: set[str] = set()
    while pending and len(seen) < 50:  # bounded: a page with more assets is a finding anyway
        path = pending.pop(0)
        if path is None or path in seen:
            continue
        seen.add(path)
        answer = fetch(port, path, {"Accept-Encoding": "br, gzip"})
        if not answer.ok:
            items.append({"path": path, "error": answer.error})
            continue
        encoding = answer.headers.get("Content-Encoding", "")
        decoders = {"gzip": gzip.decompress, "br": brotli.decompress}
        raw = decoders[encoding](answer.body) if encoding in decoders else answer.body
        items.append(
            {
                "path": path,
                "raw_bytes": len(raw),
                "sent_bytes": len(answer.body),
                "gzip_bytes": len(gzip.compress(raw, compresslevel=6, mtime=0)),
                "encoding": encoding or "identity",
                "server_gzip": bool(encoding),
            }
        )
        content_type = answer.headers.get("Content-Type", "")
        if "html" in content_type:
            parser = _Assets()
            parser.feed(raw.decode("utf-8", "replace"))
            found = parser.urls
        elif "css" in content_type:
            found = CSS_URL.findall(raw.decode("utf-8", "replace"))
        else:
            found = []
        for url in found:
            local = _local(path, url)
            if local is None and not url.startswith("data:"):
                external.append(url)
            pending.append(local)
    return {
        "items": items,
        "raw_bytes": sum(item.get("raw_bytes", 0) for item in items),
        "gzip_bytes": sum(item.get("gzip_bytes", 0) for item in items),
        "sent_bytes": sum(item.get("sent_bytes", 0) for item in items),
        "server_compresses": any(item.get("server_gzip") for item in items),
        "errors": [item for item in items if "error" in item],
        "external_assets_not_counted": external,
    }


def _local(base: str, url: str) -> str | None:
    """The path of a same-origin URL; None for data: URIs and other origins."""
    if url.startswith("data:"):
        return None
    parts = urlsplit(urljoin(f"http://127.0.0.1{base}", url))
    if parts.hostname != "127.0.0.1":
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")
