"""One-line setup: :func:`configure`, :func:`shutdown`, :func:`sink` and :class:`Pipeline`."""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from aiolog import _exit, _factory, _options, asyncio_diag
from aiolog._handler import BaseQueueHandler
from aiolog._listener import DEFAULT_STALL_TIMEOUT, QueueListener
from aiolog._queue import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAXSIZE,
    DEFAULT_TIMEOUT,
    OVERFLOW_POLICIES,
    Overflow,
    RecordQueue,
)
from aiolog.dictconfig import QueueHandler
from aiolog.sinks import sink

__all__ = ["Pipeline", "configure", "get_pipeline", "shutdown"]

_lock = threading.RLock()
_active: Pipeline | None = None


_WHERE = "configure()"
_ENV = "environment"


def _env_sinks() -> list[str]:
    raw = os.environ.get("AIOLOG_SINKS", "")
    urls = [part.strip() for part in raw.split(",") if part.strip()]
    return urls or ["stderr"]


def _has_format(url: str) -> bool:
    """True when the sink URL's query says ``format=`` itself."""
    query = url.partition("?")[2]
    return any(key == "format" for key, _ in urllib.parse.parse_qsl(query, True))


class Pipeline:
    """A running aiolog setup: the handler on the root logger, its queue, listener and sinks.

    Returned by :func:`configure`. :meth:`stop` (or leaving a ``with`` block) drains the
    queue into the sinks and takes the handler off the root logger again.
    """

    def __init__(
        self,
        handler: QueueHandler,
        listener: QueueListener,
        *,
        owned: Sequence[logging.Handler] = (),
        adopted: Sequence[logging.Handler] = (),
        captured_warnings: bool = False,
        exit_timeout: float = 5.0,
        root_level: int | None = None,
    ) -> None:
        self.handler = handler
        self.listener = listener
        self.owned = list(owned)
        self.adopted = list(adopted)
        self._captured_warnings = captured_warnings
        self.exit_timeout = exit_timeout
        # The root logger's level before configure() set it (None: leave it on stop).
        self._root_level = root_level
        self._set_level: int | None = None
        self._stopped = False

    def __repr__(self) -> str:
        sinks = ", ".join(stats_name for stats_name in self.listener.sink_stats())
        state = "stopped" if self._stopped else "running"
        return f"<aiolog.Pipeline {state} sinks=[{sinks}]>"

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def sinks(self) -> list[logging.Handler]:
        """The handlers the listener writes to, in order."""
        return list(self.listener.handlers)

    def stats(self) -> dict[str, Any]:
        """Counters: ``{"queue": {...}, "sinks": {NAME: {...}}, "listener": {...}}``.

        ``queue``: ``enqueued``, ``dropped`` (overflow), ``depth``, ``high_water``.
        ``sinks``: per sink (named by handler name or redacted URL) ``written``,
        ``dropped``, ``errors``, ``buffered``, ``last_error``.
        ``listener``: ``running``, ``internal_records`` (records logged on aiolog's own
        threads, not queued, to avoid feedback loops), ``bad_records``.
        """
        q = self.handler.queue
        queue_stats = {
            "enqueued": getattr(q, "enqueued", None),
            "dropped": self.handler.dropped,
            "depth": q.qsize() + self.listener.held,
            "high_water": getattr(q, "high_water", None),
        }
        return {
            "queue": queue_stats,
            "sinks": self.listener.sink_stats(),
            "listener": {
                "running": self.listener.running,
                "internal_records": self.handler.internal_dropped,
                "bad_records": self.listener._bad_records,
            },
        }

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything logged before the call is written; False on timeout."""
        return self.listener.flush(timeout)

    async def aflush(self, timeout: float = 5.0) -> bool:
        """:meth:`flush` without blocking the event loop."""
        return await self.listener.aflush(timeout)

    def stop(self, timeout: float = 5.0) -> bool:
        """Take the handler off the root logger, drain, close owned sinks. Idempotent.

        The root logger gets back the handlers it had before :func:`configure`, and its
        level unless something set another since.

        Returns True when every queued record was written within ``timeout``.
        """
        global _active
        with _lock:
            if self._stopped:
                return True
            self._stopped = True
            if _active is self:
                _active = None
                _detach(self, restore=True)
                root = logging.getLogger()
                # Only what configure() changed: a level set since then is the app's own.
                if self._root_level is not None and root.level == self._set_level:
                    root.setLevel(self._root_level)
                asyncio_diag.uninstall()
                _factory.uninstall()
        ok = self.listener.stop(timeout)
        self.handler.listener = None
        for handler in self.owned:
            handler.close()
        if self._captured_warnings and _active is None:
            logging.captureWarnings(False)
        return ok


def _stays_on_root(handler: logging.Handler) -> bool:
    """Whether configure() leaves ``handler`` on the root logger instead of adopting it."""
    return getattr(handler, "aiolog_stays_on_root", False) is True


def _detach(pipeline: Pipeline, *, restore: bool) -> None:
    root = logging.getLogger()
    with logging._lock:  # type: ignore[attr-defined]
        handlers = [h for h in root.handlers if h is not pipeline.handler]
        if restore:
            handlers = list(pipeline.adopted) + [h for h in handlers if h not in pipeline.adopted]
        root.handlers = handlers


def configure(
    sinks: Iterable[str | logging.Handler] | None = None,
    *,
    level: int | str | None = None,
    format: str | None = None,
    queue_size: int = DEFAULT_MAXSIZE,
    queue_bytes: int = DEFAULT_MAX_BYTES,
    sink_buffer: int = 10_000,
    sink_buffer_bytes: int = 64 * 1024 * 1024,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    overflow: Overflow = "drop_newest",
    block_timeout: float = DEFAULT_TIMEOUT,
    capture_warnings: bool = True,
    adopt_handlers: bool = True,
    exit_timeout: float = 5.0,
    asyncio_debug: bool | None = None,
    asyncio_slow_callback: float | None = None,
    structlog: bool = False,
    drain_on_sigterm: bool = True,
    record_factory: bool = True,
) -> Pipeline:
    """Route all logging through aiolog, in one call.

    Installs an :class:`aiolog.QueueHandler` as the root logger's only handler (the
    handlers the root had keep working, behind the queue), starts the listener with the
    given sinks, captures :mod:`warnings`, and drains the queue at interpreter exit before
    ``logging.shutdown`` closes handlers. Calling it again replaces the previous pipeline:
    the new one takes over first, then the old one drains, so no record is lost.

    :param sinks: URLs (see :func:`sink`) or handler objects. Default: the comma-separated
        ``AIOLOG_SINKS`` environment variable, else ``["stderr"]``.
    :param level: root logger level. Default ``AIOLOG_LEVEL``, else ``INFO``.
    :param format: ``json``, ``logfmt`` or ``text`` for sinks built from URLs that do not
        say (``?format=``). Default ``AIOLOG_FORMAT``, else each sink's own default.
    :param queue_size: bound of the record queue, in records. The queue is the burst
        buffer: when a sink is slower than the application, records wait there.
    :param queue_bytes: bound of the record queue, in estimated bytes (see
        :class:`aiolog.RecordQueue`): with the defaults, 200 000 ordinary records or
        128 MiB, whichever comes first.
    :param sink_buffer: each sink's own buffer, in records. When it is full the listener
        takes no more records from the queue until the sink makes room.
    :param sink_buffer_bytes: each sink's buffer in estimated bytes (rendered message and
        traceback, plus 256 per record).
    :param stall_timeout: seconds a sink with a full buffer may finish no write before it
        counts as stalled: it then drops (counted, and said in its output once it writes
        again) instead of holding the other sinks back.
    :param overflow: ``drop_newest``, ``drop_oldest`` or ``block`` (see
        :class:`aiolog.RecordQueue`).
    :param block_timeout: longest wait of the ``block`` policy, off event-loop threads.
    :param capture_warnings: route :mod:`warnings` to logging (``logging.captureWarnings``).
    :param adopt_handlers: put the root logger's existing handlers behind the queue.
    :param exit_timeout: longest the exit drain waits for the sinks.
    :param asyncio_debug: asyncio's development mode, reported as structured records:
        debug mode on every loop, the ``asyncio`` logger at ``DEBUG``, ``ResourceWarning``
        shown (see :func:`aiolog.asyncio_diag.install`, which ``configure`` always calls).
        Default ``AIOLOG_ASYNCIO_DEBUG`` (a bool: ``1``/``0``, ``true``/``false``,
        ``yes``/``no``, ``on``/``off``), else off.
    :param asyncio_slow_callback: seconds above which a callback counts as slow in debug
        mode (asyncio's default: 0.1).
    :param structlog: also configure structlog to log through this pipeline (see
        :func:`aiolog.structlog.configure_structlog`): ``structlog.get_logger()`` records
        share the sinks, levels and exit drain, and are rendered in the listener.
    :param drain_on_sigterm: when SIGTERM still has its default disposition (the process
        would die without running exit hooks, losing what is queued), install a handler
        that drains the listeners, then dies of the signal as before: same exit status.
        A SIGTERM handler of the application's own is left alone. Main thread only.
    :param record_factory: make :class:`aiolog.FastLogRecord` the record factory while
        the pipeline runs, when the factory is still the stdlib default. Records are the
        same, attribute for attribute, and cheaper to make (see
        docs/design.md). A factory of the application's own is never replaced.
    :raises aiolog.OptionError: (a :class:`ValueError`) for any bad setting, before
        anything is changed: no sink opened, no directory created, the root logger as it
        was. Values follow one grammar (sizes ``"128MB"``, durations ``"500ms"``, levels
        in any case...): see "Values and errors" in docs/index.md.
    """
    global _active
    # Every setting is read first: nothing changes unless all of them are good.
    where = _WHERE
    if asyncio_debug is None:
        raw = os.environ.get("AIOLOG_ASYNCIO_DEBUG", "").strip()
        debug = bool(raw) and _options.boolean(_ENV, "AIOLOG_ASYNCIO_DEBUG", raw)
    else:
        debug = _options.boolean(where, "asyncio_debug", asyncio_debug)
    slow = asyncio_slow_callback
    if slow is not None:
        slow = _options.duration(where, "asyncio_slow_callback", slow, positive=True)
    diag = asyncio_diag._resolve(debug, slow)
    if level is not None:
        level_no = _options.level(where, "level", level)
    else:
        level_no = _options.level(_ENV, "AIOLOG_LEVEL", os.environ.get("AIOLOG_LEVEL") or "INFO")
    if format is not None:
        format = _options.log_format(where, format)
    else:
        format = _options.log_format(_ENV, os.environ.get("AIOLOG_FORMAT") or None, "AIOLOG_FORMAT")
    overflow = _options.choice(where, "overflow", overflow, OVERFLOW_POLICIES)
    queue_size = _options.count(where, "queue_size", queue_size)
    queue_bytes = _options.size(where, "queue_bytes", queue_bytes)
    sink_buffer = _options.count(where, "sink_buffer", sink_buffer)
    sink_buffer_bytes = _options.size(where, "sink_buffer_bytes", sink_buffer_bytes)
    stall_timeout = _options.duration(where, "stall_timeout", stall_timeout)
    block_timeout = _options.duration(where, "block_timeout", block_timeout)
    exit_timeout = _options.duration(where, "exit_timeout", exit_timeout)
    capture_warnings = _options.boolean(where, "capture_warnings", capture_warnings)
    adopt_handlers = _options.boolean(where, "adopt_handlers", adopt_handlers)
    structlog = _options.boolean(where, "structlog", structlog)
    drain_on_sigterm = _options.boolean(where, "drain_on_sigterm", drain_on_sigterm)
    record_factory = _options.boolean(where, "record_factory", record_factory)
    from_env = sinks is None
    if isinstance(sinks, str):
        raise _options.OptionError(where, "sinks", sinks, "a list of sink URLs or handlers")
    specs = _env_sinks() if sinks is None else list(sinks)

    # Sinks are built last: building one opens nothing, so a refusal leaves nothing behind.
    owned: list[logging.Handler] = []
    given: list[logging.Handler] = []
    try:
        for spec in specs:
            if isinstance(spec, logging.Handler):
                if isinstance(spec, BaseQueueHandler):
                    raise _options.OptionError(
                        where, "sinks", spec, "sink URLs or handlers (not a QueueHandler)"
                    )
                given.append(spec)
            elif isinstance(spec, str):
                options: dict[str, Any] = {}
                if format is not None and not _has_format(spec):
                    options["format"] = format
                try:
                    owned.append(sink(spec, **options))
                except _options.OptionError as exc:
                    if from_env:
                        raise exc.at(f"{exc.where} in AIOLOG_SINKS") from None
                    raise
            else:
                raise _options.OptionError(
                    where, "sinks", spec, "sink URLs (strings) or logging.Handler objects"
                )
        handler = QueueHandler(
            maxsize=queue_size, max_bytes=queue_bytes, overflow=overflow, timeout=block_timeout
        )
    except BaseException:
        for handler_ in owned:
            handler_.close()
        raise

    with _lock:
        old = _active
        root = logging.getLogger()
        adopted: list[logging.Handler] = []
        if adopt_handlers:
            if old is not None:
                adopted.extend(old.adopted)
            for existing in root.handlers:
                if (
                    existing not in adopted
                    and not isinstance(existing, BaseQueueHandler)
                    and not _stays_on_root(existing)
                ):
                    adopted.append(existing)
        all_sinks = [*owned, *given, *(h for h in adopted if h not in given)]
        listener = QueueListener(
            handler.queue,
            *all_sinks,
            respect_handler_level=True,
            buffer_size=sink_buffer,
            buffer_bytes=sink_buffer_bytes,
            stall_timeout=stall_timeout,
        )
        try:
            listener.start()
        except BaseException:
            for handler_ in owned:
                handler_.close()
            raise
        handler.listener = listener
        pipeline = Pipeline(
            handler,
            listener,
            owned=owned,
            adopted=adopted,
            captured_warnings=capture_warnings,
            exit_timeout=exit_timeout,
            # A reconfigure keeps the level from before the first configure() to restore.
            root_level=root.level if old is None else old._root_level,
        )
        with logging._lock:  # type: ignore[attr-defined]
            # Observers that must see records on the logging thread stay (aiolog.testing's).
            keep: list[logging.Handler] = [h for h in root.handlers if _stays_on_root(h)]
            if not adopt_handlers:
                keep = [h for h in root.handlers if not isinstance(h, BaseQueueHandler)]
                if old is not None:
                    keep = [*old.adopted, *(h for h in keep if h not in old.adopted)]
            root.handlers = [*keep, handler]  # one assignment: each record sees old or new
            root.setLevel(level_no)
        pipeline._set_level = level_no
        _active = pipeline
        asyncio_diag._install(diag)
        if record_factory:
            _factory.install()
        else:
            _factory.uninstall()
        if old is not None:
            old._stopped = True
            # Retire the old queue first: what it holds, and whatever a thread that picked
            # the old handler just before the swap still puts there, goes to the new one.
            if isinstance(old.handler.queue, RecordQueue):
                old.handler.queue.forward(handler.queue)
            old.listener.stop(exit_timeout)
            old.handler.listener = None
            for handler_ in old.owned:
                handler_.close()
        if capture_warnings:
            logging.captureWarnings(True)
            warnings.showwarning = _showwarning
        _exit.add_drainer(_exit_drain)
        _exit.set_exit_timeout(exit_timeout)
        if drain_on_sigterm:
            _exit.drain_on_sigterm(exit_timeout)
    if structlog:
        from aiolog.structlog import configure_structlog

        configure_structlog()
    return pipeline


def _showwarning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``logging.captureWarnings``' hook, without reading the source line from disk.

    The stdlib hook formats the warning with :func:`warnings.formatwarning`, which fetches
    the offending source line through :mod:`linecache`: file I/O on the thread that warns,
    often the event loop. The record keeps ``file:line: Category: message``.
    """
    logging._showwarning(  # type: ignore[attr-defined]
        message, category, filename, lineno, file, "" if line is None else line
    )


def get_pipeline() -> Pipeline | None:
    """The pipeline :func:`configure` made last, if it is still running."""
    return _active


def shutdown(timeout: float = 5.0) -> bool:
    """Stop the active pipeline: drain, detach, close owned sinks, restore the root logger.

    The root logger gets back the handlers it had before :func:`configure` and its level
    (unless something set another since), and ``warnings`` are no longer captured.
    Return True if every record was written.
    """
    pipeline = _active
    if pipeline is None:
        return True
    return pipeline.stop(timeout)


def _exit_drain(timeout: float) -> None:
    """Stop the active pipeline at exit, within ``timeout`` seconds (see aiolog._exit)."""
    pipeline = _active
    if pipeline is not None:
        pipeline.stop(min(timeout, pipeline.exit_timeout))
