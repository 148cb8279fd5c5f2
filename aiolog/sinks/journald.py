"""systemd-journald over its native protocol: one datagram per record, no libsystemd.

::

    JournaldSink()                                    # /run/systemd/journal/socket
    JournaldSink.from_url("journald?identifier=billing")
    JournaldSink.from_url("journald:/run/systemd/journal/socket")

Each record becomes one journal entry, a set of ``NAME=value`` fields:

* ``MESSAGE``: the message and, on the lines below, the traceback and stack (what
  ``journalctl`` shows; a formatter set with :meth:`setFormatter` or ``format=`` replaces
  it). ``PRIORITY``: the syslog severity of the level (:func:`aiolog.sinks.syslog.severity`:
  DEBUG 7, INFO 6, WARNING 4, ERROR 3, CRITICAL 2). ``SYSLOG_IDENTIFIER``: ``identifier=``,
  default the file name of ``sys.argv[0]``.
* Where it came from: ``LOGGER``, ``CODE_FILE``, ``CODE_LINE``, ``CODE_FUNC``,
  ``THREAD_NAME``, and ``ASYNCIO_TASK``, ``ASYNCIO_CORO``, ``ASYNCIO_CALLBACK`` when the
  record was logged from a task or a loop callback. No ``TID``: a record carries the
  thread's Python ident, not the kernel thread id journald means.
* ``EXCEPTION_TYPE`` (``module.Name``), ``EXCEPTION_TEXT`` (the traceback alone) and
  ``STACK_INFO``, when the record has them.
* The record's structured fields: context variables, structlog's fields and ``extra=``
  fields, under journald's form of their names (upper case, ``[A-Z0-9_]``, not starting
  with ``_`` or a digit, at most 64 characters: :func:`field_name`). A field whose name
  is one of the above is sent as ``EXTRA_NAME`` rather than overwriting it. Strings and
  bytes are sent as they are, other values as JSON.

A value containing a newline is sent in the protocol's binary form (name, newline,
64-bit little-endian length, bytes, newline), so multi-line and binary values arrive
intact. An entry too large for a datagram (``EMSGSIZE``: about 200 KB with default
socket buffers) is written to a sealed memfd whose descriptor is passed instead, as
``sd_journal_send`` does.

"Written" means journald took the datagram out of its socket: after each group of
records the sink waits (without blocking the loop) until the kernel holds none of its
datagrams, then checks with an empty datagram, which journald ignores, that the same
journald is still there. Datagrams journald dropped unread because it stopped are thus
never counted as written: when journald goes away mid-stream, the records sent since the
last check are counted as dropped (some may have arrived), the record the kernel refused
is kept, and the sink reconnects with backoff and sends it to the next journald.
"""

from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import logging
import os
import socket
import stat
import struct
import termios
from collections.abc import Sequence
from typing import Any, Final

from aiolog import _options
from aiolog._fields import _SCHEMA_KEYS, record_to_dict
from aiolog.sinks._net import NetworkSink
from aiolog.sinks.syslog import _BodyFormatter, _default_app_name, severity

__all__ = ["DEFAULT_SOCKET", "JournaldSink", "encode_field", "field_name"]

#: Where journald listens for native-protocol datagrams.
DEFAULT_SOCKET: Final = "/run/systemd/journal/socket"

#: Records sent between two delivery checks: a journald that stops mid-stream costs at
#: most this many records counted as dropped (that may have arrived after all).
CONFIRM_EVERY: Final = 64

#: Longest field name journald accepts.
_NAME_MAX: Final = 64
_NAME_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
#: The fields the sink sets itself: a structured field of the same name gets ``EXTRA_``.
_OWN_FIELDS: Final = frozenset(
    {
        "MESSAGE",
        "PRIORITY",
        "SYSLOG_IDENTIFIER",
        "LOGGER",
        "CODE_FILE",
        "CODE_LINE",
        "CODE_FUNC",
        "THREAD_NAME",
        "ASYNCIO_TASK",
        "ASYNCIO_CORO",
        "ASYNCIO_CALLBACK",
        "EXCEPTION_TYPE",
        "EXCEPTION_TEXT",
        "STACK_INFO",
    }
)
#: errno values of a send that mean "this journald is gone": the datagram was refused,
#: so it can be sent again to the next one.
_GONE: Final = frozenset(
    {errno.ECONNREFUSED, errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE, errno.ENOENT}
)
#: errno values of a send that mean "too large for a datagram": use a memfd.
_TOO_LARGE: Final = frozenset({errno.EMSGSIZE, errno.ENOBUFS})
_SEALS: Final = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
_LE64: Final = struct.Struct("<Q")
_OPTIONS: Final = frozenset(
    {"level", "write_timeout", "backoff_initial", "backoff_max", "identifier", "format"}
)

_names: dict[str, str] = {}


# ---------------------------------------------------------------------------- encoding


def field_name(name: str) -> str:
    """Journald's form of a field name: ``request-id`` -> ``REQUEST_ID``.

    Upper case; any character but ``A-Z``, ``0-9`` and ``_`` becomes ``_``; leading
    underscores (journald keeps those for its trusted fields) are removed and a leading
    digit gets an ``F`` before it; cut to 64 characters; ``FIELD`` if nothing is left.
    """
    known = _names.get(name)
    if known is not None:
        return known
    upper = name.upper()
    text = "".join(ch if ch in _NAME_CHARS else "_" for ch in upper).lstrip("_")
    if text[:1].isdigit():
        text = "F" + text
    text = text[:_NAME_MAX] or "FIELD"
    if len(_names) >= 1024:  # unbounded variety of names: stay small
        _names.clear()
    _names[name] = text
    return text


def _value_bytes(value: object) -> bytes:
    """A field's value: strings as UTF-8, bytes as they are, other values as JSON."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    from aiolog.formatting import dumps

    return dumps(value).encode("utf-8", "backslashreplace")


def encode_field(name: str, value: bytes) -> bytes:
    """One field of the native protocol: ``NAME=value\\n``, or the binary form.

    The binary form (for values containing a newline) is the name, a newline, the value's
    length as a 64-bit little-endian integer, the value and a newline.
    """
    if b"\n" in value:
        return b"%s\n%s%s\n" % (name.encode("ascii"), _LE64.pack(len(value)), value)
    return b"%s=%s\n" % (name.encode("ascii"), value)


def _sealed_memfd(data: bytes) -> int:
    """A memfd holding ``data``, sealed against any change (journald checks the seals)."""
    fd = os.memfd_create("aiolog-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_socket_path(where: str, path: object) -> str:
    """``path`` if it can be journald's socket; an :class:`OptionError` if it cannot."""
    expected = "an absolute path to journald's socket"
    if not isinstance(path, str) or not os.path.isabs(path):
        _options.fail(where, "path", path, expected)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path  # journald may start later: the sink retries with backoff
    except OSError as exc:
        _options.fail(where, "path", path, f"{expected} ({exc.strerror})")
    if not stat.S_ISSOCK(mode):
        _options.fail(where, "path", path, f"{expected}, not a file or directory")
    return path


class _Gone(Exception):
    """The journald the socket was connected to is gone (the datagram was refused)."""


class JournaldSink(NetworkSink):
    """Send records to systemd-journald as native-protocol datagrams.

    :param path: journald's socket; default ``/run/systemd/journal/socket``.
    :param identifier: ``SYSLOG_IDENTIFIER``; default the file name of ``sys.argv[0]``.
    :param format: ``"text"``, ``"json"`` or ``"logfmt"`` for ``MESSAGE`` instead of the
        default message-and-traceback.
    :param options: ``level``; ``write_timeout``: seconds journald may take to make room
        for a datagram or to read what was sent (default 10); ``backoff_initial``,
        ``backoff_max``: delays between attempts to reach a journald that is not there.

    :raises aiolog.OptionError: a relative path, or one that exists and is not a socket.
    """

    kind = "JournaldSink"

    def __init__(
        self,
        path: str = DEFAULT_SOCKET,
        *,
        identifier: str | None = None,
        format: str | None = None,
        **options: Any,
    ) -> None:
        where = f"{self.kind}()"
        checked = _check_socket_path(where, path)
        fmt = _options.log_format(where, format)
        super().__init__(**options)
        self.path = checked
        self.identifier = _value_bytes(identifier or _default_app_name())
        if fmt is not None:
            from aiolog.formatting import formatter_for

            self._default_formatter = formatter_for(fmt)
        self.url = "journald" if path == DEFAULT_SOCKET else f"journald:{path}"
        #: Entries too large for a datagram, sent through a memfd.
        self.memfds = 0
        self._sock: socket.socket | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> JournaldSink:
        """Build from ``journald`` or ``journald:/path/to/socket``, with an optional query.

        The query takes the keyword options of :class:`JournaldSink`; keyword ``options``
        override it.

        :raises aiolog.OptionError: unknown option, bad value, or a path that cannot be a
            socket (relative, or a file or directory).
        """
        where = _options.url_where(url)
        scheme, _, path = url.split("?", 1)[0].partition(":")
        if scheme.lower() != "journald":
            raise _options.OptionError(where, "scheme", scheme, "journald or journald:PATH")
        merged = _options.merged(where, url, options, _OPTIONS)
        with _options.located(where):
            return cls(path or DEFAULT_SOCKET, **merged)

    def default_formatter(self) -> logging.Formatter:
        """Message, then traceback and stack on the lines below."""
        return _BodyFormatter()

    def sink_stats(self) -> dict[str, Any]:
        """The network sinks' counters, and ``memfds`` (entries sent through a memfd)."""
        return {**self.net_stats(), "memfds": self.memfds}

    # -- encoding ---------------------------------------------------------------------------

    def entry(self, record: logging.LogRecord) -> bytes:
        """The record as one native-protocol entry (the datagram's payload)."""
        fields = record_to_dict(record)
        parts = [
            encode_field("MESSAGE", _value_bytes(self.format(record).rstrip("\n"))),
            b"PRIORITY=%d\n" % severity(record.levelno),
            encode_field("SYSLOG_IDENTIFIER", self.identifier),
            encode_field("LOGGER", _value_bytes(record.name)),
            encode_field("CODE_FILE", _value_bytes(record.pathname)),
            b"CODE_LINE=%d\n" % record.lineno,
            encode_field("CODE_FUNC", _value_bytes(record.funcName)),
            encode_field("THREAD_NAME", _value_bytes(record.threadName)),
        ]
        for name, key in (
            ("ASYNCIO_TASK", "task"),
            ("ASYNCIO_CORO", "coro"),
            ("ASYNCIO_CALLBACK", "callback"),
        ):
            value = fields.get(key)
            if value is not None:
                parts.append(encode_field(name, _value_bytes(value)))
        exception = fields.get("exception")
        if exception is not None and exception.get("type"):
            parts.append(encode_field("EXCEPTION_TYPE", _value_bytes(exception["type"])))
        if exception is not None and exception.get("traceback"):
            parts.append(encode_field("EXCEPTION_TEXT", _value_bytes(exception["traceback"])))
        if record.stack_info:
            parts.append(encode_field("STACK_INFO", _value_bytes(record.stack_info)))
        structured = list(fields.get("context", {}).items())
        structured += [(k, v) for k, v in fields.items() if k not in _SCHEMA_KEYS]
        structured += list(fields.get("extra", {}).items())
        for key, value in structured:
            name = field_name(key if isinstance(key, str) else str(key))
            if name in _OWN_FIELDS:
                name = "EXTRA_" + name
            parts.append(encode_field(name, _value_bytes(value)))
        return b"".join(parts)

    # -- sending ----------------------------------------------------------------------------

    async def write(self, records: Sequence[logging.LogRecord]) -> int:
        """Send the batch, one datagram per record; return how many records were lost."""
        entries = list(self.render(records, self.entry))
        lost = len(records) - len(entries)  # the encoder failed on these
        unconfirmed = 0  # sent since the last delivery check
        index = 0
        while index < len(entries):
            sock = await self._connected()
            try:
                sent = await self._send(sock, entries[index])
            except _Gone as exc:
                # Refused: this one can go to the next journald. Those sent before it
                # since the last check may have been dropped unread: counted as lost.
                self.note_error(str(exc))
                self._forget()
                lost += unconfirmed
                unconfirmed = 0
                continue
            except asyncio.TimeoutError:
                self.note_error(
                    f"TimeoutError: journald at {self.path} took no datagram for "
                    f"{self.write_timeout:g}s; dropped the rest of the batch"
                )
                self._forget()
                return lost + unconfirmed + len(entries) - index
            index += 1
            if not sent:
                lost += 1
                continue
            unconfirmed += 1
            if unconfirmed >= CONFIRM_EVERY:
                lost += await self._confirm(sock, unconfirmed)
                unconfirmed = 0
        if unconfirmed:
            lost += await self._confirm(sock, unconfirmed)
        return lost

    async def _connected(self) -> socket.socket:
        """The socket connected to journald, connected (again) first, with backoff."""
        sock = self._sock
        if sock is not None:
            return sock
        first = True
        while True:
            if not first:
                self.retries += 1
            first = False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            try:
                # Connected, not sendto(): the kernel then says when journald has room
                # (writability), and refuses datagrams once that journald is gone.
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                self.note_error(
                    f"{type(exc).__name__}: cannot reach journald at {self.path}: "
                    f"{exc.strerror or exc}"
                )
                await self.sleep_backoff()
                continue
            break
        self.backoff.reset()
        self.connects += 1
        self._sock = sock
        return sock

    async def _send(self, sock: socket.socket, data: bytes) -> bool:
        """Send one entry (through a memfd if too large); False if it is known lost.

        :raises _Gone: the datagram was refused: this journald is gone.
        :raises asyncio.TimeoutError: journald made no room for ``write_timeout`` seconds.
        """
        try:
            await self._sendmsg(sock, [data], [])
            return True
        except asyncio.TimeoutError:  # an OSError on 3.11+: not a send error
            raise
        except OSError as exc:
            if exc.errno in _GONE:
                raise _Gone(f"{type(exc).__name__}: journald at {self.path} went away") from None
            if exc.errno not in _TOO_LARGE:
                self.note_error(exc)
                return False
        loop = asyncio.get_running_loop()
        try:
            fd = await loop.run_in_executor(self.executor, _sealed_memfd, data)
        except OSError as exc:
            self.note_error(f"{type(exc).__name__}: cannot make a memfd for a large entry: {exc}")
            return False
        try:
            fds = array.array("i", [fd]).tobytes()
            await self._sendmsg(sock, [], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except asyncio.TimeoutError:
            raise
        except OSError as exc:
            if exc.errno in _GONE:
                raise _Gone(f"{type(exc).__name__}: journald at {self.path} went away") from None
            self.note_error(exc)
            return False
        finally:
            os.close(fd)
        self.memfds += 1
        return True

    async def _sendmsg(
        self, sock: socket.socket, buffers: list[bytes], ancdata: list[tuple[int, int, bytes]]
    ) -> None:
        """``sock.sendmsg`` without blocking: wait for room, at most ``write_timeout``."""
        try:
            sock.sendmsg(buffers, ancdata)
            return
        except BlockingIOError:
            pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.write_timeout
        while True:
            ready = loop.create_future()
            loop.add_writer(sock.fileno(), _resolve, ready)
            try:
                await asyncio.wait_for(ready, max(0.0, deadline - loop.time()))
            finally:
                loop.remove_writer(sock.fileno())
            try:
                sock.sendmsg(buffers, ancdata)
                return
            except BlockingIOError:
                continue

    async def _confirm(self, sock: socket.socket, count: int) -> int:
        """Wait until journald read the ``count`` records just sent; return those lost.

        The kernel counts the bytes of datagrams sent and not yet read (``SIOCOUTQ``):
        zero means journald took them all, or that it went away and they were dropped.
        An empty datagram, which journald ignores, tells which: it is refused only when
        that journald is gone.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.write_timeout
        delay = 0.0002
        while _unread(sock):
            if loop.time() > deadline:
                self.note_error(
                    f"TimeoutError: journald at {self.path} read nothing for "
                    f"{self.write_timeout:g}s; {count} record(s) counted as lost"
                )
                self._forget()
                return count
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)
        try:
            await self._sendmsg(sock, [], [])
        except (OSError, asyncio.TimeoutError) as exc:
            self.note_error(
                f"{type(exc).__name__}: journald at {self.path} went away; "
                f"{count} record(s) it may not have read counted as lost"
            )
            self._forget()
            return count
        return 0

    def _forget(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    async def aclose(self) -> None:
        """Close the socket."""
        self._forget()

    def after_fork(self) -> None:
        """Forget the parent's socket without closing it."""
        self._sock = None
        super().after_fork()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _unread(sock: socket.socket) -> int:
    """Bytes of datagrams this socket sent that the receiver has not read yet."""
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    count: int = struct.unpack("i", buf)[0]
    return count
