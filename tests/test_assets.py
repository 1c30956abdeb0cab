"""Compressed answers, fingerprinted static files cached for a year, no-store only for downloads."""

from __future__ import annotations

import gzip
import re

import brotli

from tests.settings.html_tree import parse


def asset_urls(client) -> list[str]:
    page = parse(client.get("/settings").get_data(as_text=True))
    urls = [link.attrs["href"] for link in page.find_all("link")] + [s.attrs["src"] for s in page.find_all("script")]
    return [url for url in urls if url.startswith("/static/")]


def test_the_page_links_every_asset_by_a_content_fingerprint(client):
    urls = asset_urls(client)
    assert len(urls) == 4
    assert all(re.search(r"\?v=[0-9a-f]{12}$", url) for url in urls), urls


def test_fingerprinted_assets_are_cached_for_a_year_and_compressed(client):
    for url in asset_urls(client):
        response = client.get(url, headers={"Accept-Encoding": "br, gzip"})
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable", url
        if response.mimetype in ("text/css", "text/javascript"):
            assert response.headers["Content-Encoding"] == "br", url
            assert brotli.decompress(response.get_data()), url


def test_a_stale_or_missing_fingerprint_is_not_cached_forever(client):
    for url in ("/static/css/app.css?v=000000000000", "/static/css/app.css"):
        assert "immutable" not in client.get(url).headers.get("Cache-Control", ""), url


def test_the_page_is_compressed_when_the_browser_asks_and_revalidated_not_no_store(client):
    response = client.get("/settings", headers={"Accept-Encoding": "gzip"})

    assert response.headers["Content-Encoding"] == "gzip"
    assert b"Database backup" in gzip.decompress(response.get_data())
    assert response.headers["Cache-Control"] == "private, no-cache"  # the back/forward cache may keep it
    assert "Accept-Encoding" in response.headers["Vary"]


def test_json_answers_are_compressed_above_500_bytes(client):
    small = client.get("/api/v1/settings/backups", headers={"Accept-Encoding": "gzip"})
    for _ in range(3):
        client.post("/api/v1/settings/backup-db")
    large = client.get("/api/v1/settings/scheduler", headers={"Accept-Encoding": "gzip"})

    assert "Content-Encoding" not in small.headers  # compressing a few bytes costs more than it saves
    assert large.headers.get("Content-Encoding") == "gzip"


def test_html_that_may_reflect_the_request_is_not_compressed_breach(client):
    """A compressed page with the CSRF token beside text the request chose would leak the token by size."""
    posted = client.post(
        "/settings/schedule/backup_db", data={"mode": "cron", "cron": "61 * * * *"}, headers={"Accept-Encoding": "gzip"}
    )
    queried = client.get(
        "/settings/schedule/backup_db/fields?mode=cron&cron=x" + "y" * 600, headers={"Accept-Encoding": "gzip"}
    )

    assert posted.status_code == 422 and "Content-Encoding" not in posted.headers
    assert "Content-Encoding" not in queried.headers


def test_a_downloaded_backup_is_never_stored_nor_compressed(client):
    name = client.post("/api/v1/settings/backup-db").get_json()["file"]
    response = client.get(f"/settings/backups/{name}", headers={"Accept-Encoding": "gzip"})

    assert response.headers["Cache-Control"] == "no-store"
    assert "Content-Encoding" not in response.headers
