"""aiolog's sinks: where the listener writes records, and the URL schemes that make them.

The concrete sinks are imported when a URL of theirs is first used, so importing aiolog
costs none of their dependencies (httpx, protobuf...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiolog._options import OptionError, located, url_where
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


def _journald_factory(url: str, **options: Any) -> logging.Handler:
    from aiolog.sinks.journald import JournaldSink

    return JournaldSink.from_url(url, **options)


def _kafka_factory(url: str, **options: Any) -> logging.Handler:
    from aiolog.sinks.kafka import KafkaSink

    return KafkaSink.from_url(url, **options)


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
    "journald": _journald_factory,
    "kafka": _kafka_factory,
    "kafka+tls": _kafka_factory,
}


def sink(url: str, **options: Any) -> logging.Handler:
    """Build a sink (a :class:`logging.Handler`) from a URL.

    ``stderr``, ``stdout``, ``file:logs/app.jsonl?rotate=10MB&keep=5``... (the README has
    the table). Keyword options override the URL's query. Usable from dictConfig as
    ``{"()": "aiolog.sink", "url": "file:app.jsonl"}``; ``formatter``/``level`` keys of
    such a dict are applied by dictConfig itself.

    :raises aiolog.OptionError: (a :class:`ValueError`) unknown scheme or option, bad
        value, unwritable path: ``sink 'URL': bad OPTION=VALUE: expected ...``, secrets
        redacted. Building a sink opens nothing: a refused one leaves nothing behind.
    """
    if not isinstance(url, str) or not url.strip():
        raise OptionError("sink()", "url", url, "a sink URL such as 'stderr' or 'file:app.log'")
    url = url.strip()
    scheme = url.split(":", 1)[0].split("?", 1)[0].lower()
    try:
        factory = SCHEMES[scheme]
    except KeyError:
        known = ", ".join(sorted(SCHEMES))
        raise OptionError(url_where(url), "scheme", scheme, f"one of {known}") from None
    with located(url_where(url)):
        return factory(url, **options)
