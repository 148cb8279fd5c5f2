"""Sink URLs: parsing helpers and redaction of secrets for stats, reprs and errors."""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["query_options", "redact_url"]

_SECRET_KEYS = re.compile(r"(pass|secret|token|key|auth|signature|sig)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return ``url`` with the password and secret-looking query values replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{k}={'***' if _SECRET_KEYS.search(k) else urllib.parse.quote(v, safe='/:,')}"
            for k, v in pairs
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def query_options(url: str) -> dict[str, str]:
    """The query parameters of ``url`` as a dict; a repeated key raises ``ValueError``."""
    query = urllib.parse.urlsplit(url).query
    options: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key in options:
            raise ValueError(f"sink option {key!r} given twice in {redact_url(url)!r}")
        options[key] = value
    return options
