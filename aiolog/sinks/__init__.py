"""aiolog's sinks: where the listener writes records, and the URL schemes that make them.

The concrete sinks are imported when a URL of theirs is first used, so importing aiolog
costs none of their dependencies (httpx, protobuf...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiolog._urls import redact_url
from aiolog.sinks._base import Sink, WriteResult

__all__ = ["SCHEMES", "Sink", "WriteResult", "sink"]


def _stream_factory(url: str, **options: Any) -> logging.Handler:
    from aiolog.sinks.stream import StreamSink

    return StreamSink.from_url(url, **options)


def _file_factory(url: str, **options: Any) -> logging.Handler:
    from aiolog.sinks.file import FileSink

    return FileSink.from_url(url, **options)


def _tcp_factory(url: str, **options: Any) -> logging.Handler:
    from aiolog.sinks.tcp import TcpSink

    return TcpSink.from_url(url, **options)


def _syslog_factory(url: str, **options: Any) -> logging.Handler:
    from aiolog.sinks.syslog import SyslogSink

    return SyslogSink.from_url(url, **options)


def _http_factory(url: str, **options: Any) -> logging.Handler:
    from aiolog.sinks.http import HttpSink

    return HttpSink.from_url(url, **options)


def _otlp_factory(url: str, **options: Any) -> logging.Handler:
    from aiolog.sinks.otlp import OtlpSink

    return OtlpSink.from_url(url, **options)


def _fluent_factory(url: str, **options: Any) -> logging.Handler:
    from aiolog.sinks.fluent import FluentSink

    return FluentSink.from_url(url, **options)


#: URL scheme -> factory ``(url, **options) -> logging.Handler``.
SCHEMES: dict[str, Callable[..., logging.Handler]] = {
    "stderr": _stream_factory,
    "stdout": _stream_factory,
    "file": _file_factory,
    "tcp": _tcp_factory,
    "tcp+tls": _tcp_factory,
    "syslog+udp": _syslog_factory,
    "syslog+tcp": _syslog_factory,
    "syslog+tls": _syslog_factory,
    "http": _http_factory,
    "https": _http_factory,
    "otlp+http": _otlp_factory,
    "otlp+https": _otlp_factory,
    "fluent": _fluent_factory,
    "fluent+tls": _fluent_factory,
}


def sink(url: str, **options: Any) -> logging.Handler:
    """Build a sink (a :class:`logging.Handler`) from a URL.

    ``stderr``, ``stdout``, ``file:logs/app.jsonl?rotate=10MB&keep=5``... (the README has
    the table). Keyword options override the URL's query. Usable from dictConfig as
    ``{"()": "aiolog.sink", "url": "file:app.jsonl"}``; ``formatter``/``level`` keys of
    such a dict are applied by dictConfig itself.

    :raises ValueError: unknown scheme or option, bad value, unwritable path; the message
        names the culprit (with secrets redacted).
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"a sink URL must be a non-empty string, not {url!r}")
    url = url.strip()
    scheme = url.split(":", 1)[0].split("?", 1)[0].lower()
    try:
        factory = SCHEMES[scheme]
    except KeyError:
        known = ", ".join(sorted(SCHEMES))
        raise ValueError(
            f"unknown sink URL scheme {scheme!r} in {redact_url(url)!r} (known: {known})"
        ) from None
    return factory(url, **options)
