"""The emit path: :class:`BaseQueueHandler`, which never blocks and never raises.

Everything here runs on the thread that logs, usually the event loop's, so it does the
minimum: capture the asyncio context and offer the record with it to a bounded queue.
The record is not copied here unless its message must be frozen now (other handlers of
the same logger see it unmodified either way): the listener's copy is made when the queue
is drained (:func:`aiolog._record.unpack`). No formatter runs here, no traceback is
rendered (that would read source files through ``linecache``), and no lock is taken.

:class:`aiolog.QueueHandler`, the public class, adds what :func:`logging.config.dictConfig`
needs on top of this one (see :mod:`aiolog.dictconfig`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import logging.handlers
import queue as queue_module
import threading
from collections.abc import Callable, Iterator
from typing import Any

from aiolog import _exit, _options
from aiolog._context import ORIGIN_TASK, callback_name, fill_context
from aiolog._executor import INTERNAL_THREADS
from aiolog._listener import QueueListener
from aiolog._queue import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAXSIZE,
    DEFAULT_TIMEOUT,
    EXC_BYTES,
    LARGE_TEXT,
    OVERFLOW_POLICIES,
    RECORD_BYTES,
    Overflow,
    RecordQueue,
    _Counter,
)
from aiolog._record import (
    IMMUTABLE_TYPES,
    RECORD_FIELDS,
    PreparedRecord,
    freeze_message,
    get_message,
    has_mutable_extras,
    plain_context,
    snapshot_extras,
)

__all__ = ["BaseQueueHandler", "logging_lock_released"]

_get_running_loop = asyncio._get_running_loop
_current_task = asyncio.current_task
_copy_context = contextvars.copy_context
_origin_task = ORIGIN_TASK.get
_get_ident = threading.get_ident
_new_record = logging.LogRecord.__new__
_LogRecord = logging.LogRecord
_LARGE_TEXT = LARGE_TEXT
_RECORD_FIELDS = RECORD_FIELDS


class BaseQueueHandler(logging.handlers.QueueHandler):
    """A :class:`logging.handlers.QueueHandler` whose :meth:`emit` never blocks.

    The emit path of :class:`aiolog.QueueHandler`, which adds the dictConfig keys.
    ``BaseQueueHandler(queue)`` works like the stdlib class. Without a queue, the handler
    makes an :class:`aiolog.RecordQueue` with ``maxsize``, ``max_bytes``, ``overflow`` and
    ``timeout``; a queue that is not a ``RecordQueue`` (say a ``queue.Queue``) is used as it
    is, with records it refuses (``queue.Full``) counted as dropped.

    Per record, on the caller's thread, it:

    * leaves the record unmodified for the logger's other handlers: what it captures
      travels next to the record, and the listener's copy is made off this thread;
    * keeps ``msg % args`` for the listener when every argument is an immutable scalar, and
      renders it now otherwise (a list or an object could change before the listener runs);
    * keeps a structlog event dict (a dict ``msg`` with an ``"event"`` key, as structlog's
      stdlib integration logs it) as a dict, frozen by
      :func:`aiolog._record.freeze_event`, instead of
      turning it into a string (structlog #702);
    * records the asyncio task (``taskName``, backfilled on 3.10/3.11), its coroutine's
      qualified name (``aiolog_coro``) and a :mod:`contextvars` snapshot (``aiolog_context``);
    * offers it to the queue, which applies the overflow policy and counts drops.

    Records logged on aiolog's own threads (the listener and sink workers) are counted in
    :attr:`internal_dropped` and not queued, so a sink that logs cannot feed itself forever.

    :param maxsize: bound in records of the queue the handler makes (default 200 000).
    :param max_bytes: its bound in estimated bytes (default 128 MiB).
    :param overflow: its overflow policy (default ``"drop_newest"``).
    :param timeout: the longest the ``"block"`` policy waits (default 5 s).
    :param level: the handler's level.
    """

    #: True when emit/prepare/enqueue are this class's own: the emit path may then pack
    #: records for a RecordQueue (see :meth:`emit`). A subclass that overrides one of
    #: them gets the stdlib order of calls instead.
    _packs = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._packs = all(
            getattr(cls, name) is getattr(BaseQueueHandler, name)
            for name in ("emit", "prepare", "enqueue")
        )

    @property
    def queue(self) -> Any:
        """The queue records go to: a RecordQueue, or any object with ``put_nowait()``."""
        return self._queue

    @queue.setter
    def queue(self, queue: Any) -> None:
        self._queue = queue
        self._offer: Callable[[Any], bool] | None = (
            queue.offer if self._packs and isinstance(queue, RecordQueue) else None
        )

    def __init__(
        self,
        queue: Any = None,
        *,
        maxsize: int | None = None,
        max_bytes: int | None = None,
        overflow: Overflow | None = None,
        timeout: float | None = None,
        level: int | str = logging.NOTSET,
    ) -> None:
        where = "QueueHandler()"
        options = queue_options(where, maxsize, max_bytes, overflow, timeout)
        level_no = _options.level(where, "level", level)
        if queue is None:
            queue = make_record_queue(options)
        elif options:
            raise ValueError(
                f"{', '.join(options)} set up the queue the handler makes: give them to "
                f"the queue instead ({type(queue).__name__} was given)"
            )
        super().__init__(queue)
        self.setLevel(level_no)
        self._internal = _Counter()
        self._foreign_dropped = _Counter()

    @property
    def listener(self) -> logging.handlers.QueueListener | None:
        """The listener that drains this handler's queue, if one was attached.

        :meth:`close` stops it (draining the queue into its sinks). ``None`` detaches
        without stopping.
        """
        return self.__dict__.get("_listener")

    @listener.setter
    def listener(self, listener: logging.handlers.QueueListener | None) -> None:
        self.__dict__["_listener"] = listener

    @property
    def internal_dropped(self) -> int:
        """Records logged on aiolog's own threads and therefore not queued."""
        return self._internal.value

    @property
    def dropped(self) -> int:
        """Records lost on the way in: overflow and queue refusals."""
        q = self.queue
        if isinstance(q, RecordQueue):
            return q.dropped + self._foreign_dropped.value
        return self._foreign_dropped.value

    def handle(self, record: logging.LogRecord) -> Any:
        """Filter and emit without taking the handler lock: the queue is thread-safe."""
        if self.filters:
            rv: Any = self.filter(record)
            if not rv:
                return rv
            if isinstance(rv, _LogRecord):
                record = rv
        else:
            rv = True
        self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Capture the context and offer the record to the queue; never blocks or raises.

        The record itself is not copied: what the handler captures (task, coroutine,
        callback, :mod:`contextvars` snapshot) travels next to it in the queue, and the
        consumer side of :class:`aiolog.RecordQueue` makes the listener's private copy
        (see :func:`aiolog._record.unpack`), off this thread. Other handlers of the
        logger see the record untouched. A record whose message could still change (a
        mutable argument, a non-str ``msg``) takes :meth:`prepare`'s copy-and-freeze
        path instead, and so does any queue that is not a ``RecordQueue``.
        """
        try:
            if _get_ident() in INTERNAL_THREADS:
                self._internal.inc()
                return
            offer = self._offer
            msg = record.msg
            if offer is not None and msg.__class__ is str and self.formatter is None:
                d = record.__dict__
                if len(d) != _RECORD_FIELDS and has_mutable_extras(d):  # copied at once
                    offer = None
                size = len(msg)
                args = record.args
                if args:
                    if args.__class__ is not tuple:
                        offer = None  # a single mapping argument: mutable
                    else:
                        for arg in args:
                            cls = arg.__class__
                            if cls not in IMMUTABLE_TYPES:
                                offer = None
                                break
                            if cls is str or cls is bytes:
                                size += len(arg)  # type: ignore[arg-type]
                if offer is not None:
                    if size > _LARGE_TEXT or record.exc_info:  # counted by its size
                        offer = functools.partial(self._queue.offer_sized, size=_size_of(record))
                    loop = _get_running_loop()
                    if loop is not None:
                        task = _current_task(loop)
                        if task is not None:
                            offer((record, task.get_name(), task, None, _copy_context()))
                        else:
                            offer((record, None, None, callback_name(), _copy_context()))
                        return
                    ref = _origin_task()  # an asyncio.to_thread worker names its task
                    task = ref() if ref is not None else None
                    if task is not None:
                        offer((record, task.get_name(), task, None, _copy_context()))
                    else:
                        offer((record, None, None, None, _copy_context()))
                    return
            self.enqueue(self.prepare(record))
        except Exception:
            self.handleError(record)

    def emit_prepared(self, record: PreparedRecord) -> None:
        """:meth:`handle` for a :class:`~aiolog._record.PreparedRecord` no other handler sees.

        Such a record needs no copy: :mod:`aiolog.structlog` made it for this handler
        alone, frozen and with its context captured. Filters take the usual path.
        """
        if self.filters:
            self.handle(record)
            return
        try:
            if _get_ident() in INTERNAL_THREADS:
                self._internal.inc()
                return
            self.enqueue(record)
        except Exception:
            self.handleError(record)

    def enqueue(self, record: logging.LogRecord) -> None:
        """Offer to the queue under its overflow policy (a refusal is counted, not raised)."""
        q = self.queue
        if isinstance(q, RecordQueue):
            size = _size_of(record)
            if size > RECORD_BYTES:
                q.offer_sized(record, size)
            else:
                q.offer(record)
            return
        try:
            q.put_nowait(record)
        except queue_module.Full:
            self._foreign_dropped.inc()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return a copy of ``record`` that is safe to format later, on another thread.

        For aiolog's own queue the copy keeps the record's structure (``msg``/``args``,
        the exception, the live :mod:`contextvars` snapshot) for the listener to render.
        For any other queue, or when the handler has a formatter, it is what the stdlib's
        ``prepare`` makes (see :meth:`prepare_as_stdlib`).
        """
        if self.formatter is not None or not isinstance(self._queue, RecordQueue):
            return self.prepare_as_stdlib(record)
        d = record.__dict__.copy()
        if type(d["msg"]) is str:
            args = d["args"]
            if args:
                if type(args) is tuple:
                    for arg in args:
                        if type(arg) not in IMMUTABLE_TYPES:
                            d["msg"] = get_message(record)
                            d["args"] = None
                            break
                else:  # a single mapping argument: mutable
                    d["msg"] = get_message(record)
                    d["args"] = None
        elif record.__class__ is PreparedRecord:  # captured and frozen when it was made
            prepared: logging.LogRecord = _new_record(_LogRecord)
            prepared.__dict__ = d
            return prepared
        else:
            freeze_message(record, d)
        snapshot_extras(d)
        fill_context(d)
        copy: logging.LogRecord = _new_record(_LogRecord)
        copy.__dict__ = d
        return copy

    def prepare_as_stdlib(self, record: logging.LogRecord) -> logging.LogRecord:
        """The stdlib's queued record: formatted text, nothing that cannot be pickled.

        As :meth:`logging.handlers.QueueHandler.prepare`: ``msg`` and ``message`` are the
        handler's formatting of the record (its formatter, or logging's default, which
        appends the traceback and stack), and ``args``, ``exc_info``, ``exc_text`` and
        ``stack_info`` are cleared. What aiolog captures comes as plain data: the task
        name, the coroutine and callback names, and the context variables as a dict
        (:func:`aiolog._record.plain_context`). So a ``multiprocessing.Queue`` can carry
        it, and a listener on the other side writes it whether it is aiolog's or the
        stdlib's.
        """
        msg = self.format(record)
        d = record.__dict__.copy()
        if record.__class__ is not PreparedRecord:  # that one captured it when it was made
            fill_context(d)
        d["aiolog_context"] = plain_context(d.get("aiolog_context"))
        d["message"] = msg
        d["msg"] = msg
        d["args"] = None
        d["exc_info"] = None
        d["exc_text"] = None
        d["stack_info"] = None
        snapshot_extras(d)
        copy: logging.LogRecord = _new_record(_LogRecord)
        copy.__dict__ = d
        return copy

    def close(self) -> None:
        """Stop an attached listener first (draining the queue), then close.

        This is what ``logging.shutdown()`` does to every handler at exit: the listener
        drains into its sinks (and a loss, if any, is said on stderr) before they close.
        """
        listener = self.listener
        if isinstance(listener, QueueListener):
            with logging_lock_released():
                listener.stop()
            _exit.report_losses([listener])
        elif getattr(listener, "_thread", None):
            with logging_lock_released():
                listener.stop()  # type: ignore[union-attr]
        super().close()


def queue_options(
    where: str,
    maxsize: object = None,
    max_bytes: object = None,
    overflow: object = None,
    timeout: object = None,
) -> dict[str, Any]:
    """The queue settings given (not None), read and named as :class:`RecordQueue` takes them.

    :raises aiolog.OptionError: for a bad value, said at ``where``.
    """
    options: dict[str, Any] = {}
    if maxsize is not None:
        options["maxsize"] = _options.count(where, "maxsize", maxsize)
    if max_bytes is not None:
        options["max_bytes"] = _options.size(where, "max_bytes", max_bytes)
    if overflow is not None:
        options["overflow"] = _options.choice(where, "overflow", overflow, OVERFLOW_POLICIES)
    if timeout is not None:
        options["timeout"] = _options.duration(where, "timeout", timeout)
    return options


def make_record_queue(options: dict[str, Any]) -> RecordQueue:
    """A :class:`RecordQueue` with ``options`` over the defaults."""
    merged = {
        "maxsize": DEFAULT_MAXSIZE,
        "max_bytes": DEFAULT_MAX_BYTES,
        "overflow": "drop_newest",
        "timeout": DEFAULT_TIMEOUT,
        **options,
    }
    return RecordQueue(
        merged["maxsize"], merged["overflow"], merged["timeout"], max_bytes=merged["max_bytes"]
    )


@contextlib.contextmanager
def logging_lock_released() -> Iterator[None]:
    """Let go of logging's module lock for the block, if this thread holds it.

    :func:`logging.config.dictConfig` holds that lock while it builds and closes
    handlers, and starting or stopping a listener waits for the listener thread. That
    thread may need the lock meanwhile: the level check of a logger whose cache
    dictConfig cleared (the new event loop's "Using selector" debug line), or the weakref
    callback of any handler the garbage collector frees on that thread. Waiting for it
    while holding the lock would deadlock, so the lock is released (all its recursion
    levels) and taken back afterwards, as :class:`threading.Condition` does.
    """
    lock: Any = logging._lock  # type: ignore[attr-defined]
    is_owned = getattr(lock, "_is_owned", None)
    if is_owned is None or not is_owned():
        yield
        return
    state = lock._release_save()
    try:
        yield
    finally:
        lock._acquire_restore(state)


def _size_of(record: logging.LogRecord) -> int:
    """The queue's estimate of a record's memory: its text, plus its traceback's frames.

    Ordinary records (short text, no traceback) come out at :data:`RECORD_BYTES` and are
    counted as such; see :mod:`aiolog._queue`.
    """
    msg = record.msg
    if msg.__class__ is str:
        text = len(msg)
    elif isinstance(msg, dict):  # a structlog event dict
        text = sum(len(value) for value in msg.values() if value.__class__ is str)
    else:
        text = 0
    args = record.args
    if args.__class__ is tuple:
        for arg in args:
            if arg.__class__ is str or arg.__class__ is bytes:
                text += len(arg)
    if text <= LARGE_TEXT and not record.exc_info:
        return RECORD_BYTES
    return RECORD_BYTES + text + (EXC_BYTES if record.exc_info else 0)
