"""Sink URLs: redaction of secrets for stats, reprs and errors (parsing: aiolog._options)."""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["is_secret", "redact_url"]

_SECRET_KEYS = re.compile(r"(pass|secret|token|key|auth|signature|sig)", re.IGNORECASE)


#: Setting names whose values are never shown in errors (``sig`` as a whole word only:
#: ``drain_on_sigterm`` is not a secret).
_SECRET_OPTION = re.compile(
    r"pass|secret|token|auth|signature|key(?![a-z])|(?<![a-z])sig(?![a-z])|header", re.IGNORECASE
)


def is_secret(option: str) -> bool:
    """True for a setting whose value must never be shown (``token``, ``key``, headers...)."""
    return _SECRET_OPTION.search(option) is not None


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
