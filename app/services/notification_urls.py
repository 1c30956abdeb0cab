"""Notification and ping URLs: checked line by line with Apprise, and masked everywhere they are shown.

The URLs hold secrets (tokens, passwords). Pages, answers and logs only ever carry
Apprise's privacy form (``json://user:****@host/...``); an error about a line names its
number and scheme, never its text.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URLS = 20
MAX_URL_LENGTH = 2000
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_SPLIT = re.compile(r"[/:@?&=#,+%]")
MIN_SECRET_PART = 4


class NotificationUrlError(ValueError):
    """A URL (or list of URLs) that cannot be saved; the message names the line, not the secret."""


def _apprise():
    import apprise

    # Apprise's debug and info lines carry each request's full URL (a Telegram bot token is
    # in its path): never create them. Its warnings and errors mask secrets; we keep them per
    # send and log our own masked summary instead.
    apprise_log = logging.getLogger("apprise")
    apprise_log.setLevel(logging.WARNING)
    apprise_log.propagate = False
    return apprise


def _has_control_or_space(text: str) -> bool:
    return any(char.isspace() or unicodedata.category(char)[0] == "C" for char in text)


def instantiate(url: str):
    """The Apprise service for ``url``, or None when Apprise cannot use it."""
    return _apprise().Apprise.instantiate(url)


def check_line(number: int, line: str) -> None:
    """Raise :class:`NotificationUrlError` naming ``number`` unless Apprise can use ``line``."""
    scheme = _SCHEME.match(line)
    where = f"Line {number}"
    if len(line) > MAX_URL_LENGTH:
        raise NotificationUrlError(f"{where} is longer than {MAX_URL_LENGTH} characters.")
    if _has_control_or_space(line):
        raise NotificationUrlError(
            f"{where} contains a space or a control character; write one URL per line and encode spaces as %20."
        )
    if scheme is None:
        raise NotificationUrlError(f"{where} is not a URL (it needs a scheme such as json://, mailto:// or ntfy://).")
    if instantiate(line) is None:
        raise NotificationUrlError(
            f"{where} ({scheme.group(1).lower()}://…) is not a notification URL Apprise accepts: an unknown "
            "scheme or a missing part (see github.com/caronc/apprise/wiki for each service's form)."
        )


def parse_urls(text: str, stored: list[str] = ()) -> list[str]:
    """The URLs of a "one per line" text, checked; a line equal to a stored URL's masked form keeps that URL.

    So a form or API client can send back what it was shown without losing the secrets.
    """
    lines = [line.strip() for line in (text or "").replace("\r\n", "\n").split("\n")]
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line]
    if len(numbered) > MAX_URLS:
        raise NotificationUrlError(f"At most {MAX_URLS} notification URLs (got {len(numbered)} lines).")
    unmask = {mask(url): url for url in reversed(list(stored))}
    urls: list[str] = []
    for number, line in numbered:
        if line in unmask:
            url = unmask[line]
        else:
            check_line(number, line)
            url = line
        if url in urls:
            raise NotificationUrlError(f"Line {number} repeats an earlier URL.")
        urls.append(url)
    return urls


def parse_ping_url(text: str | None, stored: str | None = None) -> str | None:
    """A checked ping URL (http or https), the stored one when its masked form comes back, or None."""
    value = (text or "").strip()
    if not value:
        return None
    if stored and value == mask_ping(stored):
        return stored
    if len(value) > MAX_URL_LENGTH:
        raise NotificationUrlError(f"The ping URL is longer than {MAX_URL_LENGTH} characters.")
    if _has_control_or_space(value):
        raise NotificationUrlError("The ping URL contains a space or a control character.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise NotificationUrlError("The ping URL must be an http(s) address, e.g. https://hc-ping.com/<your-uuid>.")
    return value.rstrip("/")


def mask(url: str) -> str:
    """Apprise's privacy form of a notification URL (secrets replaced)."""
    service = instantiate(url)
    if service is None:
        return _masked_fallback(url)
    return service.url(privacy=True)


def mask_ping(url: str) -> str:
    """A ping URL with its path (where Healthchecks and Uptime Kuma keep the secret) shortened to its end."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    path = parts.path.strip("/")
    if not path:
        return f"{parts.scheme}://{host}/"
    return f"{parts.scheme}://{host}/****{path[-4:] if len(path) > 8 else ''}"


def _masked_fallback(url: str) -> str:
    scheme = _SCHEME.match(url)
    return f"{scheme.group(1).lower()}://****" if scheme else "****"


def target_key(url: str) -> str:
    """A stable key for a URL's send history that does not reveal it."""
    return hashlib.sha256(url.encode()).hexdigest()


@dataclass(frozen=True)
class Scrubber:
    """Removes every secret part of some URLs from a text (an error message, a log line)."""

    secrets: tuple[str, ...]

    @classmethod
    def for_urls(cls, urls: list[str], masked: list[str]) -> Scrubber:
        """Secrets are the parts of each URL that its masked form does not show, and whole URLs."""
        found: set[str] = set()
        for url, shown in zip(urls, masked, strict=True):
            found.add(url)
            for part in _SPLIT.split(url):
                if len(part) >= MIN_SECRET_PART and part not in shown:
                    found.add(part)
        return cls(tuple(sorted(found, key=len, reverse=True)))

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        for secret in self.secrets:
            text = text.replace(secret, "****")
        return text
