"""NDJSON over TCP: one JSON object per line, for Vector, Logstash, Fluent Bit socket inputs.

::

    TcpSink.from_url("tcp://127.0.0.1:5170")
    TcpSink.from_url("tcp+tls://logs.example.com:6000?ca=/etc/ssl/internal-ca.pem")

Each record is :class:`aiolog.formatting.JSONFormatter`'s line (or the output of the
handler's own formatter, or of ``?format=logfmt``) followed by ``\\n``. JSON lines never
contain a raw newline; a formatter whose output does (``format=text`` with a traceback)
has its newlines escaped as ``\\n`` so that one record stays one line.

Delivery is as TCP allows (see :mod:`aiolog.sinks._net`): the sink waits for the
connection and reconnects with backoff, keeping the batch in hand while nothing was sent;
a chunk whose write fails or stalls is counted as dropped, never resent.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from aiolog import _options
from aiolog._urls import redact_url
from aiolog.sinks._net import COMMON_OPTIONS, TLS_OPTIONS, ConnectionSink, tls_options

__all__ = ["TcpSink"]

_SCHEMES = {"tcp": False, "tcp+tls": True}


class TcpSink(ConnectionSink):
    """Send records as newline-delimited JSON over a TCP or TLS connection.

    :param host: the peer's name or address.
    :param port: the peer's TCP port.
    :param tls: ``True`` for TLS, verified against the system trust store unless the
        keyword options ``ca``, ``cert``, ``key``, ``verify``, ``server_hostname`` say
        otherwise (see :class:`aiolog.sinks._net.TLSOptions`).
    :param format: ``"json"`` (default), ``"logfmt"`` or ``"text"``. A formatter set with
        :meth:`setFormatter` wins.
    :param options: ``level``, ``connect_timeout``, ``write_timeout`` (seconds a chunk may
        wait for a peer that does not read), ``backoff_initial``, ``backoff_max``.
    """

    kind = "TcpSink"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        format: str | None = None,
        **options: Any,
    ) -> None:
        where = f"{self.kind}()"
        tls_keys = {k: options.pop(k) for k in list(options) if k in TLS_OPTIONS}
        if tls_keys and not tls:
            key = sorted(tls_keys)[0]
            raise _options.OptionError(
                where, key, tls_keys[key], "TLS options only with tcp+tls://"
            )
        port = _options.port(where, "port", port)
        fmt = _options.log_format(where, format)
        tls_settings = tls_options(where, host, tls_keys) if tls else None
        super().__init__(host, port, tls=tls_settings, **options)
        self.url = f"{'tcp+tls' if tls else 'tcp'}://{_hostport(host, port)}"
        if fmt is not None:
            from aiolog.formatting import formatter_for

            self._default_formatter = formatter_for(fmt)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> TcpSink:
        """Build from ``tcp://host:port`` or ``tcp+tls://host:port?ca=...``.

        The query takes the keyword options; keyword ``options`` override it.

        :raises ValueError: unknown option, bad host or port, unreadable TLS file.
        """
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        where = _options.url_where(url)
        if scheme not in _SCHEMES:
            raise _options.OptionError(where, "scheme", scheme, "tcp or tcp+tls")
        tls = _SCHEMES[scheme]
        known = COMMON_OPTIONS | {"format"} | (TLS_OPTIONS if tls else frozenset())
        merged = _options.merged(where, url, options, known)
        # TCP inputs have no standard port: the URL must give one.
        host, port = _options.endpoint(where, url, None)
        with _options.located(where):
            sink = cls(host, port, tls=tls, **merged)
        sink.url = redact_url(url)
        return sink

    def frame(self, record: logging.LogRecord) -> bytes:
        """The record's line, UTF-8, ending in ``\\n`` (inner newlines escaped)."""
        line = self.format(record)
        if "\n" in line or "\r" in line:
            line = line.replace("\r", "\\r").replace("\n", "\\n")
        return f"{line}\n".encode("utf-8", "backslashreplace")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
