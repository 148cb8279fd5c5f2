"""What every network sink shares: endpoints, options, TLS, backoff, counters, streams.

The listener calls a sink's ``write(batch)`` and waits for it, never concurrently with
itself, while it keeps buffering that sink's next records (bounded by count, dropping and
counting beyond). The network sinks build on that contract instead of keeping a second
queue of their own:

* ``write`` returns when the batch is delivered **or** known lost, and returns how many of
  its records were lost; the listener counts them as dropped. Flush barriers therefore
  mean "delivered" (as far as the protocol can tell), not "handed to a background task".
* While the peer cannot be reached, ``write`` keeps the batch and reconnects with
  exponential backoff and jitter (:class:`Backoff`); the records logged meanwhile wait in
  the listener's bounded buffer. Nothing was sent, so nothing is lost by waiting, and a
  peer that is down when the application starts costs no record unless the outage
  outlasts the buffer. ``stop()``'s deadline bounds the wait: what is still held then is
  counted as dropped.
* A failure after bytes left is handled as the protocol allows. A TCP stream has no
  acknowledgement, so the records of a chunk whose write failed or timed out are counted
  as dropped (they may or may not have arrived) and never sent twice; HTTP answers with a
  status, so a batch is retried on the statuses that say "try again" and dropped on those
  that say "never".

Every sink counts ``errors`` (failed connects, writes and requests), ``retries``
(attempts after the first, connections included), ``connects`` and keeps ``last_error``
(``"SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] ..."``), with credentials
redacted; :meth:`NetworkSink.net_stats` returns them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import ssl
from collections.abc import Callable, Sequence
from typing import Any, Final

from aiolog import _options
from aiolog._options import OptionError
from aiolog._record import expose_context
from aiolog.sinks._base import Sink

__all__ = [
    "Backoff",
    "ConnectionSink",
    "NetworkSink",
    "TLSOptions",
    "context_items",
]

#: Default seconds for a TCP connect plus TLS handshake.
CONNECT_TIMEOUT: Final = 10.0
#: Default seconds a chunk may take to leave for the kernel before the peer counts as stalled.
WRITE_TIMEOUT: Final = 10.0
#: First and longest delay between reconnection attempts, in seconds.
BACKOFF_INITIAL: Final = 0.1
BACKOFF_MAX: Final = 30.0
#: Streams are written in chunks of about this many bytes, cut at record boundaries: a
#: failure loses at most the records of one chunk, and each chunk is waited for separately.
CHUNK_BYTES: Final = 256 * 1024

#: Options every network sink takes, beside its own.
TLS_OPTIONS: Final = frozenset({"ca", "cert", "key", "verify", "server_hostname"})
COMMON_OPTIONS: Final = frozenset(
    {"level", "connect_timeout", "write_timeout", "backoff_initial", "backoff_max"}
)


def _bad(sink: str, option: str, value: object, why: str) -> OptionError:
    return OptionError(sink, option, value, why)


# ---------------------------------------------------------------------------- TLS


class TLSOptions:
    """TLS settings of a sink, checked and loaded when the sink is built.

    Verification is on by default, against the system's trust store or ``ca`` (a PEM file
    of trusted certificates); the name checked, and sent as SNI, is the URL's host unless
    ``server_hostname`` says otherwise. ``cert``/``key`` present a client certificate.
    ``verify=False`` turns all checks off and must be written out: it is never a fallback.

    Files are read here, on the configuring thread, so a missing or unreadable file is a
    :class:`ValueError` at configure time rather than an error on every reconnect.
    """

    def __init__(
        self,
        sink: str,
        host: str,
        *,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        verify: bool | str = True,
        server_hostname: str | None = None,
    ) -> None:
        self.verify = _options.boolean(sink, "verify", verify)
        self.server_hostname = server_hostname or host
        if key is not None and cert is None:
            raise _bad(sink, "key", key, "a client key together with cert=")
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if ca is not None:
            _check_readable(sink, "ca", ca)
            try:
                context.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as exc:
                raise _bad(sink, "ca", ca, f"a PEM file of certificates ({exc})") from None
        if cert is not None:
            _check_readable(sink, "cert", cert)
            if key is not None:
                _check_readable(sink, "key", key)
            try:
                context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise _bad(sink, "cert", cert, f"a loadable client certificate ({exc})") from None
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self.context = context


def _check_readable(sink: str, option: str, path: str) -> None:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise _bad(sink, option, path, "a readable file (it is not one)")


def tls_options(sink: str, host: str, options: dict[str, Any]) -> TLSOptions:
    """Pop the TLS keys from ``options`` and build :class:`TLSOptions` from them."""
    return TLSOptions(
        sink,
        host,
        ca=options.pop("ca", None),
        cert=options.pop("cert", None),
        key=options.pop("key", None),
        verify=options.pop("verify", True),
        server_hostname=options.pop("server_hostname", None),
    )


# ---------------------------------------------------------------------------- backoff


class Backoff:
    """Delays between attempts: doubling from ``initial`` up to ``maximum``, with jitter.

    Each delay is drawn uniformly from the upper half of the current step ("equal
    jitter"), so processes that lost one peer together do not reconnect together, and no
    delay is ever close to zero.
    """

    def __init__(
        self,
        initial: float = BACKOFF_INITIAL,
        maximum: float = BACKOFF_MAX,
        random: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = max(initial, maximum)
        self._random = random
        self._step = initial

    def next(self) -> float:
        """The next delay; each call doubles the step, up to ``maximum``."""
        step = self._step
        self._step = min(self.maximum, step * 2)
        return step / 2 + self._random() * step / 2

    def reset(self) -> None:
        """Start again from ``initial`` (after a success)."""
        self._step = self.initial


# ---------------------------------------------------------------------------- records

#: Context variables that belong to the interpreter or to libraries, not to the application
#: (as :mod:`aiolog.formatting` leaves them out); names starting with ``_`` are left out too.
_CONTEXT_DENYLIST: Final = frozenset(
    {"decimal_context", "current_context", "current_async_library_cvar"}
)
_STRUCTLOG_PREFIX: Final = "structlog_"


def context_items(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The application's context variables captured with the record, sorted by name.

    Variables bound with ``structlog.contextvars`` appear under their structlog key (and
    not at all once unbound), as in :func:`aiolog.formatting.record_to_dict`.
    """
    context = getattr(record, "aiolog_context", None)
    if context is None:
        return []
    pairs = []
    for var, value in context.items():
        name = getattr(var, "name", None)
        if not isinstance(name, str):
            continue
        if name.startswith(_STRUCTLOG_PREFIX):
            if value is Ellipsis:
                continue
            name = name[len(_STRUCTLOG_PREFIX) :]
        if name.startswith("_") or name in _CONTEXT_DENYLIST:
            continue
        pairs.append((name, value))
    pairs.sort(key=lambda pair: pair[0])
    return pairs


# ---------------------------------------------------------------------------- the base


class NetworkSink(Sink):
    """Base of the network sinks: counters, backoff, the default formatter.

    Subclasses set :attr:`url` to the redacted URL and implement :meth:`write`; they report
    every failure through :meth:`note_error` and return the number of records lost.
    """

    #: Label used in option errors (``"TcpSink"``).
    kind = "NetworkSink"

    def __init__(
        self,
        *,
        level: int | str = logging.NOTSET,
        connect_timeout: float | str = CONNECT_TIMEOUT,
        write_timeout: float | str = WRITE_TIMEOUT,
        backoff_initial: float | str = BACKOFF_INITIAL,
        backoff_max: float | str = BACKOFF_MAX,
    ) -> None:
        where = f"{self.kind}()"
        level_no = _options.level(where, "level", level)
        self.connect_timeout = _options.duration(
            where, "connect_timeout", connect_timeout, positive=True
        )
        self.write_timeout = _options.duration(where, "write_timeout", write_timeout, positive=True)
        self.backoff = Backoff(
            _options.duration(where, "backoff_initial", backoff_initial, positive=True),
            _options.duration(where, "backoff_max", backoff_max, positive=True),
        )
        super().__init__(level_no)
        #: Attempts after a failure: reconnections and resent requests.
        self.retries = 0
        #: Connections (or HTTP clients) established.
        self.connects = 0
        self._default_formatter: logging.Formatter | None = None

    def sink_stats(self) -> dict[str, Any]:
        """The sink's own counters, merged into ``Pipeline.stats()`` by the listener."""
        return self.net_stats()

    def net_stats(self) -> dict[str, Any]:
        """``errors``, ``retries``, ``connects`` and ``last_error``, for ``stats()``."""
        return {
            "errors": self.errors,
            "retries": self.retries,
            "connects": self.connects,
            "last_error": self.last_error,
        }

    def format(self, record: logging.LogRecord) -> str:
        """Format with the handler's formatter, else the sink's default one."""
        formatter = self.formatter
        if formatter is None:
            formatter = self._default_formatter
            if formatter is None:
                formatter = self._default_formatter = self.default_formatter()
        else:
            expose_context(record)
        return formatter.format(record)

    def default_formatter(self) -> logging.Formatter:
        """The formatter used when none was set: JSON lines unless a subclass says more."""
        from aiolog.formatting import JSONFormatter

        return JSONFormatter()

    async def sleep_backoff(self) -> None:
        """Wait the next backoff delay (cancellable: ``stop()``'s deadline ends it)."""
        await asyncio.sleep(self.backoff.next())


#: The parent's streams, in a forked child: kept from the collector (see ``after_fork``).
_FORKED_AWAY: list[tuple[asyncio.StreamReader | None, asyncio.StreamWriter]] = []


class ConnectionSink(NetworkSink):
    """A sink that writes frames to a TCP (optionally TLS) connection it keeps open.

    Subclasses turn a record into one frame of bytes with :meth:`frame`. ``write`` sends a
    batch in chunks of about :data:`CHUNK_BYTES`, each given ``write_timeout`` seconds to
    reach the kernel's socket buffer; a chunk that fails or times out is counted as lost
    and the connection is dropped and made again, with backoff, for the next chunk.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: TLSOptions | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.host = host
        self.port = port
        self.tls = tls
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def frame(self, record: logging.LogRecord) -> bytes:
        """One record as the bytes sent for it, framing included."""
        raise NotImplementedError

    async def handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Run the protocol's opening exchange on a new connection; the default does nothing.

        Called once per connection, before anything is written; bound its reads by
        :attr:`connect_timeout` yourself. Raising :class:`OSError`, :class:`TimeoutError`,
        :class:`ssl.SSLError` or :class:`EOFError` counts as a failed connect (noted,
        retried with backoff); any other exception drops the connection and propagates
        out of the write (the peer refused the sink for good, e.g. a wrong shared key).
        """

    async def write(self, records: Sequence[logging.LogRecord]) -> int:
        """Send the batch; return how many of its records could not be delivered."""
        lost = len(records)  # each record sent counts itself off
        chunk: list[bytes] = []
        size = 0
        for frame in self.render(records, self.frame):
            lost -= 1
            chunk.append(frame)
            size += len(frame)
            if size >= CHUNK_BYTES:
                lost += await self._send(chunk)
                chunk, size = [], 0
        if chunk:
            lost += await self._send(chunk)
        return lost

    async def _send(self, frames: list[bytes]) -> int:
        """Write one chunk on a live connection; on failure drop it and the connection."""
        writer = await self._connected()
        try:
            # One write(), not writelines(): Python 3.12+ selector transports skip flow
            # control in writelines(), so drain() would return at once and buffer forever.
            writer.write(b"".join(frames))
            await asyncio.wait_for(writer.drain(), self.write_timeout)
        except (OSError, asyncio.TimeoutError, ssl.SSLError, RuntimeError) as exc:
            # RuntimeError: some loops report writing to a transport closed meanwhile so.
            if isinstance(exc, asyncio.TimeoutError):
                self.note_error(
                    f"TimeoutError: peer {self.host}:{self.port} accepted no data for "
                    f"{self.write_timeout:g}s; dropped the connection"
                )
            else:
                self.note_error(exc)
            self._abort()
            return len(frames)
        return 0

    async def _connected(self) -> asyncio.StreamWriter:
        """The open connection, made (again) first if there is none or the peer left."""
        writer, reader = self._writer, self._reader
        if writer is not None and reader is not None:
            if not writer.is_closing() and not reader.at_eof() and reader.exception() is None:
                return writer
            # The peer closed (or reset) since the last write: nothing of this batch has
            # been sent yet, so reconnect first instead of writing into a dead socket.
            self.note_error(f"ConnectionResetError: {self.host}:{self.port} closed the connection")
            self._abort()
        first = True
        writer = None
        while True:
            if not first:
                self.retries += 1
            first = False
            try:
                new_reader, new_writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self.host,
                        self.port,
                        ssl=self.tls.context if self.tls is not None else None,
                        server_hostname=self.tls.server_hostname if self.tls is not None else None,
                        limit=1 << 16,
                    ),
                    self.connect_timeout,
                )
            except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
                self.note_error(exc)
                await self.sleep_backoff()
                continue
            try:
                await self.handshake(new_reader, new_writer)
            except (OSError, asyncio.TimeoutError, ssl.SSLError, EOFError) as exc:
                self.note_error(exc)
                new_writer.transport.abort()
                await self.sleep_backoff()
                continue
            except BaseException:  # the peer refused us for good, or cancelled: no retry
                new_writer.transport.abort()
                raise
            reader, writer = new_reader, new_writer
            break
        assert writer is not None
        transport = writer.transport
        # drain() then waits until everything was handed to the kernel (for TLS: to the TLS
        # layer, which keeps at most 64 KiB): "written" means the socket took it, and a
        # stalled peer shows up as a drain timeout. Not high=0: asyncio's TLS transport
        # then leaves writing paused when its buffer is already empty.
        transport.set_write_buffer_limits(high=1, low=0)
        self.backoff.reset()
        self.connects += 1
        self._reader, self._writer = reader, writer
        return writer

    def _abort(self) -> None:
        """Forget the connection at once, without waiting for the peer (it may be stalled)."""
        writer = self._writer
        self._reader = self._writer = None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.transport.abort()

    async def aclose(self) -> None:
        """Close the connection cleanly (TLS close_notify included), with a deadline."""
        writer = self._writer
        self._reader = self._writer = None
        if writer is None:
            return
        try:
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), self.connect_timeout)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            writer.transport.abort()
        except BaseException:  # cancelled by stop()'s deadline: still release the socket
            writer.transport.abort()
            raise

    def after_fork(self) -> None:
        """Forget the parent's connection without closing it (the parent still uses it).

        Forgotten, not released: the child keeps the parent's stream objects referenced
        for good. Were they collected, ``StreamWriter.__del__`` would close the transport,
        and its unregistering would edit the epoll interest set the child shares with the
        parent: the parent would never again hear its socket is readable (a sink that
        waits for acks would wait in vain).
        """
        if self._writer is not None:
            _FORKED_AWAY.append((self._reader, self._writer))
        self._reader = self._writer = None
        super().after_fork()
