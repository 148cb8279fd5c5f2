"""Syslog, RFC 5424, over UDP (RFC 5426), TCP (RFC 6587) and TLS (RFC 5425).

::

    SyslogSink.from_url("syslog+udp://127.0.0.1:514?facility=local0")
    SyslogSink.from_url("syslog+tcp://logs.internal?app_name=billing")
    SyslogSink.from_url("syslog+tls://logs.example.com?ca=/etc/ssl/ca.pem")   # port 6514

Each record becomes one RFC 5424 message::

    <134>1 2026-11-24T21:25:22.123456Z web-1 billing 4242 app.db \\
    [aiolog@32473 logger="app.db" task="fetch-42" coro="fetch"][extra@32473 user="ann"] \\
    connection lost
    Traceback (most recent call last): ...

* **PRI** is ``facility * 8 + severity``; the severity of a stdlib level is that of the
  nearest standard level at or below it (DEBUG 7, INFO 6, WARNING 4, ERROR 3, CRITICAL 2;
  anything below DEBUG is 7).
* **Header**: timestamp in UTC with microseconds; HOSTNAME (``socket.gethostname()``),
  APP-NAME (``app_name=``, default the program's file name), PROCID (the process id of
  the record) and MSGID (the logger name) are cut to the RFC's limits (255, 48, 128, 32)
  and made of printable US-ASCII: any other character becomes ``_``; empty is ``-``.
* **STRUCTURED-DATA**: ``aiolog@32473`` carries where the record came from (logger,
  asyncio task, coroutine, loop callback); ``extra@32473`` carries context variables and
  ``extra=`` fields (strings as they are, other values as JSON). Names are cut to 32
  characters, ``"``, ``\\`` and ``]`` in values are escaped. 32473 is the enterprise number
  RFC 5612 reserves for documentation; receivers treat these as opaque SD-IDs.
* **MSG** is UTF-8: by default the message and, on the lines below, the traceback and
  stack (a formatter set with :meth:`setFormatter` or ``format=`` replaces this). RFC 5424
  wants a BOM before UTF-8 text, but rsyslog (and the tools reading its files) keep the
  BOM as part of the message, so it is off by default; ``bom=true`` adds it.

Framing on TCP and TLS is octet counting (``LEN SP MSG``, RFC 6587): multi-line messages
arrive whole. ``framing=lf`` ends each message with a newline instead, for receivers that
split on newlines; newlines inside the message are then written as ``#012`` (the escape
rsyslog itself uses), so that a traceback still arrives as one message. Over UDP each
record is one datagram of at most ``max_size`` bytes (default 2048), cut without
splitting a UTF-8 character; TCP and TLS cut only when ``max_size`` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
import traceback
import urllib.parse
from collections.abc import Sequence
from typing import Any, Final

from aiolog import _options
from aiolog._record import extra_items, get_message, safe_repr
from aiolog._urls import redact_url
from aiolog.sinks._net import (
    COMMON_OPTIONS,
    TLS_OPTIONS,
    ConnectionSink,
    context_items,
    tls_options,
)

__all__ = ["FACILITIES", "SyslogSink", "severity"]

#: Facility names (RFC 5424 table 1, with the usual BSD names) and their numbers.
FACILITIES: Final[dict[str, int]] = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "security": 13,
    "console": 14,
    "solaris-cron": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}

_TRANSPORTS: Final = {"syslog+udp": "udp", "syslog+tcp": "tcp", "syslog+tls": "tls"}
_DEFAULT_PORTS: Final = {"udp": 514, "tcp": 514, "tls": 6514}
_OPTIONS: Final = COMMON_OPTIONS | {
    "facility",
    "app_name",
    "hostname",
    "framing",
    "max_size",
    "bom",
    "format",
}

#: Largest UDP payload over IPv4; the least every receiver must accept (RFC 5426).
_UDP_MAX: Final = 65507
_MIN_SIZE: Final = 480
#: Bytes asyncio may hold for a UDP socket the kernel does not take fast enough; datagrams
#: beyond are dropped (and counted) rather than queued without bound.
_UDP_BUFFER_LIMIT: Final = 1 << 20

_BOM: Final = b"\xef\xbb\xbf"
_SD_ID: Final = "aiolog@32473"
_SD_EXTRA_ID: Final = "extra@32473"
_SD_VALUE_TABLE: Final = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})


def severity(levelno: int) -> int:
    """The syslog severity of a stdlib level: that of the nearest standard level below."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def _header_field(value: object, limit: int) -> str:
    """A header field: printable US-ASCII, at most ``limit`` characters, ``-`` when empty."""
    text = value if isinstance(value, str) else str(value)
    if not (text.isascii() and text.isprintable() and " " not in text):
        text = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in text)
    return text[:limit] or "-"


def _sd_name(name: str) -> str:
    """An SD-NAME (PARAM-NAME): 1-32 printable US-ASCII characters but ``= ] "``."""
    if not (name.isascii() and name.isprintable()) or any(c in name for c in ' =]"'):
        name = "".join("_" if not 33 <= ord(ch) <= 126 or ch in '=]"' else ch for ch in name)
    return name[:32] or "_"


def _sd_value(value: object) -> str:
    """A PARAM-VALUE with ``\\``, ``"`` and ``]`` escaped; non-strings as JSON."""
    if isinstance(value, str):
        text = value
    else:
        from aiolog.formatting import dumps

        text = dumps(value)
    return text.translate(_SD_VALUE_TABLE)


def _parse_facility(where: str, value: object) -> int:
    if isinstance(value, str) and value.strip().lower() in FACILITIES:
        return FACILITIES[value.strip().lower()]
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        with contextlib.suppress(_options.OptionError):
            return _options.count(where, "facility", value, low=0, high=23)
    raise _options.OptionError(where, "facility", value, f"0-23 or one of {', '.join(FACILITIES)}")


def _default_app_name() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    name = os.path.basename(argv0)
    return name if name and name != "-c" else "python"


class _BodyFormatter(logging.Formatter):
    """The default MSG: the message, then traceback and stack on the lines below.

    Reads the listener's rendered ``record.message`` and ``record.exc_text``; renders
    them into locals when a record did not pass the listener. Never mutates the record.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.__dict__.get("message")
        parts = [message if message.__class__ is str else get_message(record)]
        exc_text = record.exc_text
        if not exc_text and record.exc_info and record.exc_info[0] is not None:
            try:
                exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            except Exception as exc:
                exc_text = f"<traceback could not be rendered: {safe_repr(exc)}>"
        if exc_text:
            parts.append(exc_text)
        if record.stack_info:
            parts.append(record.stack_info)
        return "\n".join(parts)


class _UdpProtocol(asyncio.DatagramProtocol):
    """Reports asynchronous UDP errors (ICMP port unreachable, ...) to the sink."""

    def __init__(self, sink: SyslogSink) -> None:
        self.sink = sink

    def error_received(self, exc: Exception) -> None:
        self.sink.note_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink._udp = None


class SyslogSink(ConnectionSink):
    """Send records as RFC 5424 syslog messages over UDP, TCP or TLS.

    :param host: the receiver's name or address.
    :param port: its port; default 514 (UDP, TCP) or 6514 (TLS).
    :param transport: ``"udp"`` (default), ``"tcp"`` or ``"tls"``.
    :param facility: a name (``"local0"``, ``"daemon"``, ...) or a number 0-23; default
        ``"user"``.
    :param app_name: APP-NAME; default the file name of ``sys.argv[0]``.
    :param hostname: HOSTNAME; default ``socket.gethostname()``.
    :param framing: ``"octet"`` (RFC 6587 octet counting, default) or ``"lf"``; TCP/TLS.
    :param max_size: most bytes per message (at least 480); default 2048 over UDP,
        unlimited over TCP/TLS.
    :param bom: put the UTF-8 BOM before MSG, as RFC 5424 asks (off: see module doc).
    :param format: ``"text"``, ``"json"`` or ``"logfmt"`` for MSG instead of the default
        message-and-traceback.
    :param options: ``level``, ``connect_timeout``, ``write_timeout``, ``backoff_initial``,
        ``backoff_max``, and for TLS ``ca``, ``cert``, ``key``, ``verify``,
        ``server_hostname``.
    """

    kind = "SyslogSink"

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        transport: str = "udp",
        facility: int | str = "user",
        app_name: str | None = None,
        hostname: str | None = None,
        framing: str = "octet",
        max_size: int | str | None = None,
        bom: bool | str = False,
        format: str | None = None,
        **options: Any,
    ) -> None:
        where = f"{self.kind}()"
        transport = _options.choice(where, "transport", transport, tuple(_DEFAULT_PORTS))
        tls_keys = {k: options.pop(k) for k in list(options) if k in TLS_OPTIONS}
        if tls_keys and transport != "tls":
            key = sorted(tls_keys)[0]
            raise _options.OptionError(
                where, key, tls_keys[key], "TLS options only with syslog+tls://"
            )
        port = _DEFAULT_PORTS[transport] if port is None else _options.port(where, "port", port)
        self.facility = _parse_facility(where, facility)
        framing = _options.choice(where, "framing", framing, ("octet", "lf"))
        if framing == "lf" and transport == "udp":
            raise _options.OptionError(
                where, "framing", framing, "framing only over TCP and TLS, not UDP"
            )
        if max_size is None:
            self.max_size = 2048 if transport == "udp" else 0
        else:
            high = _UDP_MAX if transport == "udp" else 1 << 30
            self.max_size = _options.size(where, "max_size", max_size, low=_MIN_SIZE, high=high)
        self.bom = _options.boolean(where, "bom", bom)
        fmt = _options.log_format(where, format)
        tls = tls_options(where, host, tls_keys) if transport == "tls" else None
        super().__init__(host, port, tls=tls, **options)
        self.transport = transport
        self.framing = framing
        self.app_name = _header_field(app_name or _default_app_name(), 48)
        self.hostname = _header_field(hostname or socket.gethostname(), 255)
        if fmt is not None:
            from aiolog.formatting import formatter_for

            self._default_formatter = formatter_for(fmt)
        self.url = f"syslog+{transport}://{host if ':' not in host else f'[{host}]'}:{port}"
        self._udp: asyncio.DatagramTransport | None = None
        self._second: tuple[int, str] = (-1, "")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SyslogSink:
        """Build from ``syslog+udp://``, ``syslog+tcp://`` or ``syslog+tls://host[:port]``.

        The query takes the keyword options of :class:`SyslogSink`; keyword ``options``
        override it.

        :raises ValueError: unknown option or facility, bad host or port, unreadable CA.
        """
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        transport = _TRANSPORTS.get(scheme)
        where = _options.url_where(url)
        if transport is None:
            expected = f"one of {', '.join(_TRANSPORTS)}"
            raise _options.OptionError(where, "scheme", scheme, expected)
        known = _OPTIONS | (TLS_OPTIONS if transport == "tls" else frozenset())
        merged = _options.merged(where, url, options, known)
        host, port = _options.endpoint(where, url, _DEFAULT_PORTS[transport])
        with _options.located(where):
            sink = cls(host, port, transport=transport, **merged)
        sink.url = redact_url(url)
        return sink

    def default_formatter(self) -> logging.Formatter:
        """Message, then traceback and stack on the lines below."""
        return _BodyFormatter()

    # -- encoding ---------------------------------------------------------------------------

    def _timestamp(self, created: float) -> str:
        seconds, micros = divmod(round(created * 1_000_000), 1_000_000)
        cached = self._second
        if cached[0] != seconds:
            cached = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
            self._second = cached
        return f"{cached[1]}.{micros:06d}Z"

    def _structured_data(self, record: logging.LogRecord) -> str:
        origin = [f'logger="{_sd_value(record.name)}"']
        for param, attr in (
            ("task", "taskName"),
            ("coro", "aiolog_coro"),
            ("callback", "aiolog_callback"),
        ):
            value = getattr(record, attr, None)
            if value is not None:
                origin.append(f'{param}="{_sd_value(value)}"')
        sd = f"[{_SD_ID} {' '.join(origin)}]"
        fields: list[str] = []
        for name, item in context_items(record):
            fields.append(f'{_sd_name(name)}="{_sd_value(item)}"')
        for key, item in extra_items(record):
            fields.append(f'{_sd_name(key)}="{_sd_value(item)}"')
        if fields:
            sd += f"[{_SD_EXTRA_ID} {' '.join(fields)}]"
        return sd

    def message(self, record: logging.LogRecord) -> bytes:
        """The record as one RFC 5424 message (without transport framing)."""
        pri = self.facility * 8 + severity(record.levelno)
        header = (
            f"<{pri}>1 {self._timestamp(record.created)} {self.hostname} {self.app_name} "
            f"{_header_field(record.process if record.process is not None else '-', 128)} "
            f"{_header_field(record.name, 32)} {self._structured_data(record)} "
        )
        body = self.format(record).rstrip("\n")
        if self.framing == "lf" and "\n" in body:
            body = body.replace("\n", "#012")
        data = header.encode("utf-8", "backslashreplace")
        if self.bom:
            data += _BOM
        data += body.encode("utf-8", "backslashreplace")
        if self.max_size and len(data) > self.max_size:
            data = _cut_utf8(data, self.max_size)
        return data

    def frame(self, record: logging.LogRecord) -> bytes:
        """The message with its TCP framing: ``LEN SP MSG``, or ``MSG LF``."""
        data = self.message(record)
        if self.framing == "lf":
            return data + b"\n"
        return b"%d %s" % (len(data), data)

    # -- sending ----------------------------------------------------------------------------

    async def write(self, records: Sequence[logging.LogRecord]) -> int:
        """Send the batch (one datagram per record over UDP); return the records lost."""
        if self.transport != "udp":
            return await super().write(records)
        udp = await self._udp_transport()
        lost = 0
        for record in records:
            try:
                data = self.message(record)
            except Exception as exc:
                self.note_error(exc)
                lost += 1
                continue
            if udp.is_closing():  # closed by an error meanwhile: open again
                udp = await self._udp_transport()
            if _buffered(udp) > _UDP_BUFFER_LIMIT:
                lost += 1
                continue
            udp.sendto(data)
        if lost and not self.last_error:
            self.note_error("BufferError: the kernel did not take UDP datagrams fast enough")
        return lost

    async def _udp_transport(self) -> asyncio.DatagramTransport:
        """The UDP socket, "connected" to the receiver (so ICMP errors are reported)."""
        udp = self._udp
        if udp is not None and not udp.is_closing():
            return udp
        loop = asyncio.get_running_loop()
        first = True
        while True:
            if not first:
                self.retries += 1
            first = False
            try:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), remote_addr=(self.host, self.port)
                )
            except OSError as exc:  # the name does not resolve (yet)
                self.note_error(exc)
                await self.sleep_backoff()
                continue
            self.backoff.reset()
            self.connects += 1
            self._udp = udp
            return udp

    async def aclose(self) -> None:
        """Close the socket (UDP) or the connection (TCP/TLS)."""
        udp, self._udp = self._udp, None
        if udp is not None:
            udp.close()
        await super().aclose()

    def after_fork(self) -> None:
        """Forget the parent's socket without closing it."""
        self._udp = None
        super().after_fork()


def _buffered(udp: asyncio.DatagramTransport) -> int:
    """Bytes the loop holds for the socket (every loop we know has the method)."""
    size = getattr(udp, "get_write_buffer_size", None)
    return int(size()) if size is not None else 0


def _cut_utf8(data: bytes, size: int) -> bytes:
    """``data[:size]``, shortened further so as not to end inside a UTF-8 character."""
    cut = size
    # data[cut] is the first byte left out: while it continues a character (10xxxxxx),
    # that character would be split, so leave it out whole.
    while cut > 0 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return data[:cut]
