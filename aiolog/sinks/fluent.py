"""Fluent Forward protocol v1: PackedForward batches with acks, for Fluentd and Fluent Bit.

::

    FluentSink.from_url("fluent://127.0.0.1:24224/app.billing")
    FluentSink.from_url("fluent+tls://logs.example.com/app?ca=/etc/ssl/ca.pem&shared_key=...")

Each batch is one ``PackedForward`` message, ``[tag, entries, option]``, where ``entries``
is a msgpack ``bin`` of ``[EventTime, record]`` pairs (``CompressedPackedForward``, the
same gzip-compressed, with ``compress=gzip``). ``EventTime`` is msgpack extension type 0:
seconds and nanoseconds, two big-endian 32-bit integers. ``record`` is the map of
:func:`aiolog.formatting.record_to_dict` (``timestamp``, ``level``, ``logger``,
``message``, ``task``, ``coro``, ``thread``, ``process``, ``exception``, ``context``,
extras), or ``{"message": line}`` when the handler has a formatter of its own.

Delivery (see :mod:`aiolog.sinks._net` for what every network sink shares):

* With ``require_ack`` (the default) ``option`` carries a ``chunk`` id and the batch
  counts as written only when the peer answers ``{"ack": chunk}``. A batch whose ack does
  not come (the connection broke, ``ack_timeout`` passed) is sent again, **with the same
  chunk id**, on a new connection, until ``retry_timeout`` seconds after its first
  attempt; then it is counted as dropped. Delivery is therefore at least once: a peer that
  took a batch but died before acking it gets it twice, and receivers that keep chunk ids
  (Fluentd's ``in_forward``) can drop the copy. ``stats()`` counts ``resent`` records.
* Without acks (``require_ack=false``) a batch counts as written once the kernel took it,
  and one whose write fails is counted as dropped, never resent (plain TCP semantics).
* With ``shared_key`` the sink answers the peer's ``HELO`` with a ``PING`` (``hostname``,
  a salt, ``sha512(salt + hostname + nonce + shared_key)``, and ``username``/``password``
  digest when the peer asks for them) and checks the ``PONG``, including the peer's own
  digest of the key. A refusal is not retried on that batch: it is counted as dropped,
  ``last_error`` says ``FluentAuthError: ... refused the handshake: shared key mismatch``,
  and the next batch tries again after a backoff delay.

Requires `msgpack <https://pypi.org/project/msgpack/>`_ (the ``fluent`` extra); a URL
that needs it fails at configure time with a :class:`ValueError` saying what to install.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import logging
import os
import socket
import ssl
import struct
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from aiolog import _options
from aiolog._urls import redact_url
from aiolog.sinks._net import (
    CHUNK_BYTES,
    COMMON_OPTIONS,
    TLS_OPTIONS,
    ConnectionSink,
    tls_options,
)

if TYPE_CHECKING:
    import msgpack

__all__ = ["FluentAuthError", "FluentProtocolError", "FluentSink", "event_time"]

#: The Forward protocol's usual port, for TCP and TLS alike.
DEFAULT_PORT: Final = 24224
DEFAULT_TAG: Final = "aiolog"
#: Default seconds to wait for a batch's ack before sending it again.
ACK_TIMEOUT: Final = 30.0
#: Default seconds an unacknowledged batch is resent for, from its first attempt.
RETRY_TIMEOUT: Final = 60.0

_SCHEMES: Final = {"fluent": False, "fluent+tls": True}
_EVENT_TIME: Final = struct.Struct(">II")
#: A server message (HELO, PONG, ack) is small; more than this unread is not Forward.
_MAX_SERVER_MESSAGE: Final = 1 << 20


class FluentAuthError(Exception):
    """The peer refused the shared-key handshake (a wrong key, user or password)."""


class FluentProtocolError(ConnectionError):
    """The peer sent something the Forward protocol does not allow here (retried)."""


def require_msgpack(kind: str, url: str) -> None:
    """Raise :class:`ValueError` naming the extra to install when msgpack is missing."""
    try:
        import msgpack  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{kind}: {redact_url(url)!r} needs msgpack: pip install msgpack "
            "(or install aiolog-queue with its 'fluent' extra)"
        ) from None


def event_time(created: float) -> tuple[int, int]:
    """``(seconds, nanoseconds)`` of a ``record.created`` timestamp, for EventTime.

    To the microsecond (a float of seconds holds no more), rounded as the ``timestamp``
    field of :func:`~aiolog.formatting.record_to_dict` is, so the two always agree.
    """
    seconds, micros = divmod(round(created * 1_000_000), 1_000_000)
    return seconds, micros * 1000


def _hex_sha512(*parts: bytes | str) -> str:
    digest = hashlib.sha512()
    for part in parts:
        digest.update(part.encode("utf-8") if isinstance(part, str) else part)
    return digest.hexdigest()


def _default(value: object) -> Any:
    """What msgpack cannot encode itself: JSON's normalised form (ISO dates...), else repr."""
    from aiolog._encode import _normalize
    from aiolog._record import safe_repr

    normal = _normalize(value)
    return normal if normal.__class__ is not value.__class__ else safe_repr(value)


def _clip_ints(value: Any) -> Any:
    """``value`` with integers msgpack cannot hold (beyond 64 bits) written as strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(1 << 63) <= value < (1 << 64) else str(value)
    if isinstance(value, dict):
        return {_clip_ints(k): _clip_ints(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clip_ints(v) for v in value]
    return value


class FluentSink(ConnectionSink):
    """Send records to a Fluent Forward receiver (Fluentd, Fluent Bit) over TCP or TLS.

    :param host: the receiver's name or address.
    :param port: its port; default 24224.
    :param tag: the Fluent tag of every record; default ``"aiolog"``.
    :param tls: ``True`` for TLS, verified unless ``ca``, ``cert``, ``key``, ``verify``,
        ``server_hostname`` say otherwise (see :class:`aiolog.sinks._net.TLSOptions`).
    :param require_ack: ask for an ack per batch and resend unacked batches (default).
    :param ack_timeout: seconds to wait for an ack before resending (default 30).
    :param retry_timeout: seconds an unacked batch is resent for (default 60).
    :param compress: ``"gzip"`` for CompressedPackedForward, or ``"none"`` (default).
    :param shared_key: run the shared-key handshake with this key.
    :param hostname: the ``self_hostname`` sent in the handshake; default
        ``socket.gethostname()``.
    :param username: user for the handshake's user authentication, with ``password``.
    :param options: ``level``, ``connect_timeout``, ``write_timeout``, ``backoff_initial``,
        ``backoff_max``.
    """

    kind = "FluentSink"

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        tag: str = DEFAULT_TAG,
        tls: bool = False,
        require_ack: bool | str = True,
        ack_timeout: float | str = ACK_TIMEOUT,
        retry_timeout: float | str = RETRY_TIMEOUT,
        compress: str | None = None,
        shared_key: str | None = None,
        hostname: str | None = None,
        username: str | None = None,
        password: str | None = None,
        **options: Any,
    ) -> None:
        # -- settings: every one read (through aiolog._options) before anything is made --
        where = f"{self.kind}()"
        port = _options.port(where, "port", port)
        url = f"{'fluent+tls' if tls else 'fluent'}://{_hostport(host, port)}/{tag}"
        require_msgpack(self.kind, url)
        tls_keys = {k: options.pop(k) for k in list(options) if k in TLS_OPTIONS}
        if tls_keys and not tls:
            key = sorted(tls_keys)[0]
            raise _options.OptionError(
                where, key, tls_keys[key], "TLS options only with fluent+tls://"
            )
        if not isinstance(tag, str) or not tag:
            _options.fail(where, "tag", tag, "a non-empty string")
        require_ack = _options.boolean(where, "require_ack", require_ack)
        ack_timeout = _options.duration(where, "ack_timeout", ack_timeout, positive=True)
        retry_timeout = _options.duration(where, "retry_timeout", retry_timeout, positive=True)
        compress = _options.choice(where, "compress", compress or "none", ("none", "gzip"))
        if shared_key is not None and not shared_key:
            _options.fail(where, "shared_key", shared_key, "a non-empty key")
        if (username is None) != (password is None):
            missing = "password" if password is None else "username"
            _options.fail(where, missing, None, "username and password together")
        if username is not None and shared_key is None:
            _options.fail(where, "username", username, "a user only with shared_key")
        super().__init__(
            host, port, tls=tls_options(self.kind, host, tls_keys) if tls else None, **options
        )
        self.tag = tag
        self.require_ack = require_ack
        self.ack_timeout = ack_timeout
        self.retry_timeout = retry_timeout
        self.compress = compress == "gzip"
        self.shared_key = shared_key
        self.hostname = hostname or socket.gethostname()
        self.username = username
        self._password = password
        self.url = url
        #: Batches the peer acknowledged.
        self.acks = 0
        #: Records sent again because their batch's ack did not come.
        self.resent = 0
        #: Records counted as dropped because their batch was never acknowledged (some
        #: may have arrived).
        self.unacked = 0
        self._unpacker: msgpack.Unpacker | None = None
        import msgpack

        self._packer = msgpack.Packer(use_bin_type=True, default=_default)
        self._ext = msgpack.ExtType

    # -- URL options ------------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> FluentSink:
        """Build from ``fluent://[user:password@]host[:port][/TAG][?options]`` or ``fluent+tls://``.

        The query takes the keyword options of :class:`FluentSink`; keyword ``options``
        override it. The path is the tag (default ``aiolog``).

        :raises ValueError: unknown option, bad host, port or value, unreadable TLS file,
            msgpack not installed.
        """
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        where = _options.url_where(url)
        if scheme not in _SCHEMES:
            raise _options.OptionError(where, "scheme", scheme, "fluent or fluent+tls")
        tls = _SCHEMES[scheme]
        known = (
            COMMON_OPTIONS
            | {
                "require_ack",
                "ack_timeout",
                "retry_timeout",
                "compress",
                "shared_key",
                "hostname",
                "username",
                "password",
            }
            | (TLS_OPTIONS if tls else frozenset())
        )
        merged = _options.merged(where, url, options, known)
        host, port = _options.endpoint(where, url, DEFAULT_PORT)
        if parts.username is not None:
            merged.setdefault("username", urllib.parse.unquote(parts.username))
        if parts.password is not None:
            merged.setdefault("password", urllib.parse.unquote(parts.password))
        tag = urllib.parse.unquote(parts.path.lstrip("/")) or DEFAULT_TAG
        with _options.located(where):
            sink = cls(host, port, tag=tag, tls=tls, **merged)
        sink.url = redact_url(url)
        return sink

    # -- encoding ---------------------------------------------------------------------------

    def body(self, record: logging.LogRecord) -> dict[str, Any]:
        """The record's map: :func:`record_to_dict`, or ``{"message": ...}`` from a formatter.

        Values are normalised as for JSON, string keys included: a receiver that cannot
        decode one record (a map keyed by tuples) would refuse its whole batch, every time
        it is resent.
        """
        if self.formatter is not None:
            return {"message": self.format(record)}
        from aiolog._encode import _normalize
        from aiolog.formatting import record_to_dict

        body: dict[str, Any] = _normalize(record_to_dict(record), strict=True)
        return body

    def entry(self, record: logging.LogRecord) -> bytes:
        """One ``[EventTime, record]`` entry, msgpack-encoded."""
        seconds, nanos = event_time(record.created)
        pair = [self._ext(0, _EVENT_TIME.pack(seconds, nanos)), self.body(record)]
        try:
            return bytes(self._packer.pack(pair))
        except OverflowError:  # an int beyond 64 bits somewhere in the record
            self._packer.reset()
            return bytes(self._packer.pack(_clip_ints(pair)))

    def message(self, entries: bytes, count: int, chunk: str | None) -> bytes:
        """The PackedForward (or CompressedPackedForward) message of encoded entries."""
        option: dict[str, Any] = {"size": count}
        if chunk is not None:
            option["chunk"] = chunk
        if self.compress:
            entries = gzip.compress(entries, compresslevel=6, mtime=0)
            option["compressed"] = "gzip"
        return bytes(self._packer.pack([self.tag, entries, option]))

    # -- sending ----------------------------------------------------------------------------

    async def write(self, records: Sequence[logging.LogRecord]) -> int:
        """Send the batch (one message per ~256 KiB of entries); return the records lost."""
        lost = len(records)  # each record encoded counts itself off
        chunk: list[bytes] = []
        size = 0
        for entry in self.render(records, self.entry):
            lost -= 1
            chunk.append(entry)
            size += len(entry)
            if size >= CHUNK_BYTES:
                lost += await self._deliver(b"".join(chunk), len(chunk))
                chunk, size = [], 0
        if chunk:
            lost += await self._deliver(b"".join(chunk), len(chunk))
        return lost

    async def _deliver(self, entries: bytes, count: int) -> int:
        """Send one message until it is acked (or written, without acks); return the lost."""
        chunk = base64.b64encode(os.urandom(16)).decode("ascii") if self.require_ack else None
        data = self.message(entries, count, chunk)
        loop = asyncio.get_running_loop()
        deadline: float | None = None  # set once the message has been sent
        while True:
            try:
                if deadline is None:
                    writer = await self._connected()
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise asyncio.TimeoutError
                    writer = await asyncio.wait_for(self._connected(), remaining)
            except FluentAuthError as exc:
                self.note_error(exc)
                await self.sleep_backoff()  # the next batch tries again, not at once
                return count
            except asyncio.TimeoutError:
                return self._give_up(count)
            try:
                if deadline is not None:
                    self.retries += 1
                    self.resent += count
                else:
                    deadline = loop.time() + self.retry_timeout
                writer.write(data)
                await asyncio.wait_for(writer.drain(), self.write_timeout)
                if chunk is None:
                    return 0
                await asyncio.wait_for(self._ack(chunk), self.ack_timeout)
            except FluentAuthError as exc:  # a HELO where an ack was expected
                self.note_error(exc)
                self._abort()
                await self.sleep_backoff()
                return count
            except (OSError, asyncio.TimeoutError, ssl.SSLError, RuntimeError, EOFError) as exc:
                self._note_send_error(exc)
                self._abort()
                if chunk is None:
                    return count  # no ack: its fate is unknown, and it is never sent twice
                if deadline is None or loop.time() >= deadline:
                    return self._give_up(count)
                await self.sleep_backoff()
                continue
            self.acks += 1
            return 0

    def _give_up(self, count: int) -> int:
        self.unacked += count
        self.note_error(
            f"TimeoutError: {count} record(s) not acknowledged by {self.host}:{self.port} "
            f"within retry_timeout={self.retry_timeout:g}s; counted as dropped"
        )
        return count

    def _note_send_error(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.TimeoutError):
            self.note_error(
                f"TimeoutError: {self.host}:{self.port} did not take or acknowledge a batch "
                "in time; dropped the connection"
            )
        else:
            self.note_error(exc)

    async def _ack(self, chunk: str) -> None:
        """Read server messages until the ack of ``chunk``."""
        while True:
            message = await self._read_message()
            if isinstance(message, dict) and "ack" in message:
                if message["ack"] == chunk:
                    return
                continue  # an ack of a batch given up on this connection: late, harmless
            if isinstance(message, (list, tuple)) and message and message[0] == "HELO":
                raise FluentAuthError(
                    f"{self.host}:{self.port} asks for the shared-key handshake (HELO): "
                    "set shared_key="
                )
            raise FluentProtocolError(
                f"{self.host}:{self.port} sent {str(message)[:80]!r} where an ack was expected"
            )

    async def _read_message(self) -> Any:
        """The next msgpack message from the peer (EOF is a ConnectionResetError)."""
        reader, unpacker = self._reader, self._unpacker
        if reader is None or unpacker is None:
            raise ConnectionResetError("not connected")
        while True:
            try:
                return next(unpacker)
            except StopIteration:
                pass
            except ValueError as exc:  # msgpack's UnpackValueError, ExtraData...
                raise FluentProtocolError(
                    f"{self.host}:{self.port} sent data that is not msgpack: {exc}"
                ) from None
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError(f"{self.host}:{self.port} closed the connection")
            try:
                unpacker.feed(data)
            except Exception as exc:  # BufferFull: no Forward server message is that long
                raise FluentProtocolError(
                    f"{self.host}:{self.port} sent over {_MAX_SERVER_MESSAGE} bytes "
                    f"where an ack was expected: {exc!r}"
                ) from None

    async def handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A fresh decoder for the connection; HELO, PING, PONG when there is a shared key."""
        import msgpack

        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=_MAX_SERVER_MESSAGE)
        self._reader = reader
        if self.shared_key is None:
            return
        try:
            await asyncio.wait_for(self._authenticate(writer), self.connect_timeout)
        except asyncio.TimeoutError:
            raise FluentProtocolError(
                f"no HELO/PONG from {self.host}:{self.port} within {self.connect_timeout:g}s: "
                "does the peer expect a shared key?"
            ) from None

    async def _authenticate(self, writer: asyncio.StreamWriter) -> None:
        assert self.shared_key is not None
        helo = await self._read_message()
        if not (isinstance(helo, list) and len(helo) == 2 and helo[0] == "HELO"):
            raise FluentProtocolError(f"{self.host}:{self.port} sent no HELO: {str(helo)[:80]!r}")
        options = helo[1] if isinstance(helo[1], dict) else {}
        nonce = options.get("nonce", b"")
        auth = options.get("auth", b"")
        nonce = nonce.encode() if isinstance(nonce, str) else bytes(nonce)
        auth = auth.encode() if isinstance(auth, str) else bytes(auth)
        salt = os.urandom(16)
        username, password_digest = "", ""
        if auth:  # the peer authenticates users too
            if self.username is None or self._password is None:
                raise FluentAuthError(f"{self.host}:{self.port} asks for a username and password")
            username = self.username
            password_digest = _hex_sha512(auth, username, self._password)
        digest = _hex_sha512(salt, self.hostname, nonce, self.shared_key)
        ping = ["PING", self.hostname, salt, digest, username, password_digest]
        writer.write(bytes(self._packer.pack(ping)))
        await writer.drain()
        pong = await self._read_message()
        if not (isinstance(pong, list) and len(pong) == 5 and pong[0] == "PONG"):
            raise FluentProtocolError(f"{self.host}:{self.port} sent no PONG: {str(pong)[:80]!r}")
        _, ok, reason, server_hostname, server_digest = pong
        if not ok:
            raise FluentAuthError(f"{self.host}:{self.port} refused the handshake: {reason}")
        expected = _hex_sha512(salt, str(server_hostname), nonce, self.shared_key)
        if server_digest != expected:
            raise FluentAuthError(
                f"{self.host}:{self.port} does not know the shared key (wrong PONG digest)"
            )

    def _abort(self) -> None:
        self._unpacker = None
        super()._abort()

    def sink_stats(self) -> dict[str, Any]:
        """The network counters, with ``acks``, ``resent`` and ``unacked``."""
        return {
            **self.net_stats(),
            "acks": self.acks,
            "resent": self.resent,
            "unacked": self.unacked,
        }

    def after_fork(self) -> None:
        """Forget the parent's connection (and its decoder) without closing it."""
        self._unpacker = None
        super().after_fork()


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
