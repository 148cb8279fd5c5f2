"""The emit path: :class:`QueueHandler`, which never blocks and never raises.

Everything here runs on the thread that logs, usually the event loop's, so it does the
minimum: capture the asyncio context and offer the record with it to a bounded queue.
The record is not copied here unless its message must be frozen now (other handlers of
the same logger see it unmodified either way): the listener's copy is made when the queue
is drained (:func:`aiolog._record.unpack`). No formatter runs here, no traceback is
rendered (that would read source files through ``linecache``), and no lock is taken.

The handler is also what :func:`logging.config.dictConfig` builds (see
:mod:`aiolog.dictconfig`): its constructor accepts the keys of the stdlib's queue-handler
form, and its :attr:`QueueHandler.listener` property starts the listener it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import logging
import logging.handlers
import queue as queue_module
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from aiolog import _exit, _factory, dictconfig
from aiolog._context import ORIGIN_TASK, callback_name
from aiolog._executor import INTERNAL_THREADS
from aiolog._listener import QueueListener
from aiolog._queue import EXC_BYTES, LARGE_TEXT, RECORD_BYTES, Overflow, RecordQueue, _Counter
from aiolog._record import IMMUTABLE_TYPES, get_message, safe_repr, safe_str, task_coro_name

__all__ = [
    "EventDict",
    "PreparedRecord",
    "QueueHandler",
    "fill_context",
    "freeze_event",
    "freeze_in_place",
]

_get_running_loop = asyncio._get_running_loop
_current_task = asyncio.current_task
_copy_context = contextvars.copy_context
_origin_task = ORIGIN_TASK.get
_get_ident = threading.get_ident
_new_record = logging.LogRecord.__new__
_LogRecord = logging.LogRecord
_NEEDS_TASKNAME = sys.version_info < (3, 12)
_exc_info = sys.exc_info
_LARGE_TEXT = LARGE_TEXT

#: Records logged to a closed, named QueueHandler (dictConfig closes the old handlers before
#: it attaches the new ones), kept for the next handler that gets the same name.
_orphans: dict[str, RecordQueue] = {}
_orphans_lock = threading.Lock()

_MAX_FREEZE_DEPTH = 32


class EventDict(dict[str, Any]):
    """A structlog event dict carried as a record's ``msg``; ``str()`` is the event text.

    It travels through the queue intact and the formatters in the listener turn its keys
    into fields (see :func:`aiolog.formatting.record_to_dict`). Being a ``str()``-able
    message, it also reads well to any plain :class:`logging.Formatter`
    (``%(message)s`` is the event) and it is still a dict to structlog's
    ``ProcessorFormatter``. Made by :func:`freeze_event`.
    """

    __slots__ = ()

    def __str__(self) -> str:
        return safe_str(self.get("event"))


def _freeze(value: Any, depth: int) -> Any:
    """``value`` safe to read later on another thread: containers copied, objects rendered."""
    cls = value.__class__
    if cls in IMMUTABLE_TYPES:
        return value
    if depth >= _MAX_FREEZE_DEPTH:
        return safe_repr(value)
    depth += 1
    if isinstance(value, dict):
        return {key: _freeze(item, depth) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_freeze(item, depth) for item in value]
        return tuple(items) if cls is tuple else items
    if isinstance(value, enum.Enum):
        return value
    return safe_repr(value)  # could change before the listener runs: render it now


def _exc_tuple(value: Any) -> Any:
    """structlog's ``exc_info`` value as a ``sys.exc_info()`` tuple (or None), taken now."""
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple):
        return value
    if value:
        info = _exc_info()
        return info if info[0] is not None else None
    return None


def freeze_event(event_dict: Mapping[str, Any]) -> EventDict:
    """Copy a structlog event dict into an :class:`EventDict` the listener may read later.

    Immutable values are kept; dicts, lists and tuples are copied all the way down; other
    objects (they could change before the listener formats them) are replaced by their
    ``repr()``, which is also what JSON output would show. ``exc_info`` (``True``, an
    exception or a tuple) becomes a ``sys.exc_info()`` tuple taken now, on the thread
    that logs: the listener thread has no current exception.
    """
    return freeze_in_place(EventDict(event_dict))


def freeze_in_place(event: EventDict) -> EventDict:
    """:func:`freeze_event` for an :class:`EventDict` that nothing else refers to yet."""
    exc_info = event.pop("exc_info", None) if "exc_info" in event else None
    for key, value in event.items():
        if value.__class__ not in IMMUTABLE_TYPES:
            event[key] = _freeze(value, 0)  # a new value for a key: no resize, iteration goes on
    if exc_info is not None:
        exc_info = _exc_tuple(exc_info)
        if exc_info is not None:
            event["exc_info"] = exc_info
    return event


class PreparedRecord(logging.LogRecord):
    """A record made with its emit-time context already captured (see :func:`fill_context`).

    :mod:`aiolog.structlog` builds its records this way, frozen and complete, so that
    :meth:`QueueHandler.prepare` only has to copy them.
    """


def fill_context(d: dict[str, Any]) -> None:
    """Capture into a record's ``__dict__`` what :meth:`QueueHandler.prepare` captures.

    The asyncio task (``taskName``), its coroutine (``aiolog_coro``), the loop callback
    (``aiolog_callback``) off the task path, and the :mod:`contextvars` snapshot
    (``aiolog_context``). :meth:`QueueHandler.emit` captures the same, inline, into the
    tuple it queues: that is the hot path.
    """
    loop = _get_running_loop()
    task = _current_task(loop) if loop is not None else None
    callback = None
    if task is None:
        # Off the task path: a loop callback, or a thread (maybe an asyncio.to_thread
        # worker, whose copied context names the task that asked for the work).
        if loop is not None:
            callback = callback_name()
        else:
            ref = _origin_task()
            task = ref() if ref is not None else None
    if task is not None:
        if _NEEDS_TASKNAME or d.get("taskName") is None:
            d["taskName"] = task.get_name()
        d["aiolog_coro"] = task_coro_name(task)
    else:
        if _NEEDS_TASKNAME:
            d["taskName"] = None
        d["aiolog_coro"] = None
    d["aiolog_callback"] = callback
    d["aiolog_context"] = _copy_context()


class QueueHandler(logging.handlers.QueueHandler):
    """A :class:`logging.handlers.QueueHandler` whose :meth:`emit` never blocks.

    ``QueueHandler(queue)`` works like the stdlib class. Without a queue, the handler makes
    an :class:`aiolog.RecordQueue` with ``maxsize``, ``max_bytes``, ``overflow`` and
    ``timeout``; a queue
    that is not a ``RecordQueue`` (say a ``queue.Queue``) is used as it is, with records it
    refuses (``queue.Full``) counted as dropped.

    Per record, on the caller's thread, it:

    * leaves the record unmodified for the logger's other handlers: what it captures
      travels next to the record, and the listener's copy is made off this thread;
    * keeps ``msg % args`` for the listener when every argument is an immutable scalar, and
      renders it now otherwise (a list or an object could change before the listener runs);
    * keeps a structlog event dict (a dict ``msg`` with an ``"event"`` key, as structlog's
      stdlib integration logs it) as a dict, frozen by :func:`freeze_event`, instead of
      turning it into a string (structlog #702);
    * records the asyncio task (``taskName``, backfilled on 3.10/3.11), its coroutine's
      qualified name (``aiolog_coro``) and a :mod:`contextvars` snapshot (``aiolog_context``);
    * offers it to the queue, which applies the overflow policy and counts drops.

    Records logged on aiolog's own threads (the listener and sink workers) are counted in
    :attr:`internal_dropped` and not queued, so a sink that logs cannot feed itself forever.

    :param handlers: handlers (or names of handlers) to write to: the handler then builds
        its listener (with ``listener``, ``respect_handler_level``) and starts it. This is
        how :func:`logging.config.dictConfig` on 3.10/3.11, or the ``"()"`` form anywhere,
        builds the stdlib's queue-handler form; see :mod:`aiolog.dictconfig`.
    :param listener: with ``handlers``: the listener class or factory, or its dotted name
        (default :class:`aiolog.QueueListener`).
    :param respect_handler_level: with ``handlers``: passed to the listener.
    :param maxsize: bound in records of the queue the handler makes (default 200 000).
    :param max_bytes: its bound in estimated bytes (default 128 MiB).
    :param overflow: its overflow policy (default ``"drop_newest"``).
    :param timeout: the longest the ``"block"`` policy waits (default 5 s).
    :param level: the handler's level.

    .. versionchanged:: 0.1.0
       ``handlers``, ``listener`` and ``respect_handler_level`` (the dictConfig keys).
    """

    #: True when emit/prepare/enqueue are this class's own: the emit path may then pack
    #: records for a RecordQueue (see :meth:`emit`). A subclass that overrides one of
    #: them gets the stdlib order of calls instead.
    _packs = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._packs = all(
            getattr(cls, name) is getattr(QueueHandler, name)
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
        handlers: Iterable[logging.Handler | str] | None = None,
        listener: Any = None,
        respect_handler_level: bool = False,
        maxsize: int | None = None,
        max_bytes: int | None = None,
        overflow: Overflow | None = None,
        timeout: float | None = None,
        level: int | str = logging.NOTSET,
    ) -> None:
        options = {
            key: value
            for key, value in (
                ("maxsize", maxsize),
                ("max_bytes", max_bytes),
                ("overflow", overflow),
                ("timeout", timeout),
            )
            if value is not None
        }
        pending: dict[str, Any] = {}
        listener_obj: logging.handlers.QueueListener | None = None
        # Resolve everything before the handler exists: a target that is not built yet
        # must fail without side effects, for dictConfig to retry it later.
        targets = None
        if handlers is not None:
            try:
                targets = dictconfig.resolve_handlers(handlers)
            except ValueError as exc:
                if "not configured yet" in str(exc.__cause__):
                    dictconfig.restore_for_retry()
                raise
        if targets is None and listener is not None:
            raise ValueError("'listener' needs 'handlers': the handlers it should write to")
        if queue is None:
            queue = dictconfig.record_queue(options)
        else:
            if not callable(getattr(queue, "put_nowait", None)):
                queue = dictconfig.make_queue(queue)
            if options:
                if not dictconfig.is_stdlib_default_queue(queue):
                    raise ValueError(
                        f"{', '.join(options)} set up the queue the handler makes: give them "
                        f"to the queue instead ({type(queue).__name__} was given)"
                    )
                pending = options  # 3.13's dictConfig: replaced when the listener is set
        if targets is not None:
            factory = dictconfig.listener_factory(listener)
            listener_obj = factory(queue, *targets, respect_handler_level=respect_handler_level)
        logging.handlers.QueueHandler.__init__(self, queue)
        self._pending_options = pending
        self._retired = False
        self.setLevel(level)
        self._internal = _Counter()
        self._foreign_dropped = _Counter()
        if listener_obj is not None:
            self.listener = listener_obj

    @property
    def listener(self) -> logging.handlers.QueueListener | None:
        """The listener that drains this handler's queue, if one was attached.

        Setting an :class:`aiolog.QueueListener` starts it (a no-op when it runs already):
        :func:`logging.config.dictConfig` on 3.12+ sets this attribute and never starts
        the listener itself (cpython #117827). When the handler and the listener share an
        empty, unbounded :class:`queue.Queue` (what dictConfig makes when the config names
        no queue), a bounded :class:`aiolog.RecordQueue` replaces it on both sides.
        The stdlib's own :class:`logging.handlers.QueueListener`, which 3.12+ use when
        the dict names no listener, is replaced by an aiolog one (as 3.10/3.11 would
        build); other listener classes are stored and left to their owner to start, as
        in the stdlib. ``None`` detaches without stopping. Set by dictConfig, it also
        installs :func:`aiolog.dictconfig.drain_on_sigterm`.
        """
        return self.__dict__.get("_listener")

    @listener.setter
    def listener(self, listener: logging.handlers.QueueListener | None) -> None:
        frame = dictconfig.caller_frame()
        if type(listener) is logging.handlers.QueueListener and dictconfig.is_stdlib_default(frame):
            # 3.12+ dictConfig with no "listener" key: aiolog's listener, as on 3.10/3.11.
            listener = QueueListener(
                listener.queue,
                *listener.handlers,
                respect_handler_level=listener.respect_handler_level,
            )
        if listener is None or not isinstance(listener, QueueListener):
            self.__dict__["_listener"] = listener
            return
        options = {**self.__dict__.get("_pending_options", {})}
        dropped = dictconfig.options_dropped_by_stdlib(frame)
        for key, value in dropped.items():
            if key not in dictconfig.QUEUE_OPTIONS:
                raise TypeError(f"aiolog.QueueHandler got an unexpected key {key!r}")
            options.setdefault(key, value)
        if not listener.handlers:
            raise ValueError(
                "the listener has no handlers and would drop every record: "
                "name the handlers it writes to under 'handlers'"
            )
        if listener.queue is self.queue and dictconfig.is_stdlib_default_queue(self.queue):
            bounded = dictconfig.record_queue(options)
            self.queue = listener.queue = bounded
        elif options:
            raise ValueError(
                f"{', '.join(options)} set up the queue the handler makes: give them to "
                f"the queue instead ({type(self.queue).__name__} was given)"
            )
        self._pending_options = {}
        self.__dict__["_listener"] = listener
        with _logging_lock_released():
            listener.start()
        if dictconfig.building_handler():
            dictconfig.drain_on_sigterm()
            _factory.install()

    def set_name(self, name: str) -> None:
        """Name the handler; records a closed handler of that name kept come to this one."""
        super().set_name(name)
        q = self.queue
        if name and isinstance(q, RecordQueue):
            with _orphans_lock:
                orphan = _orphans.pop(name, None)
            if orphan is not None and orphan is not q:
                orphan.forward(q)

    name = property(logging.Handler.get_name, set_name)

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
            if offer is not None and msg.__class__ is str:
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
        """:meth:`handle` for a :class:`PreparedRecord` that no other handler will see.

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
        """Return a copy of ``record`` that is safe to format later, on another thread."""
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
            _freeze_message(record, d)
        fill_context(d)
        copy: logging.LogRecord = _new_record(_LogRecord)
        copy.__dict__ = d
        return copy

    def close(self) -> None:
        """Stop an attached listener first (draining the queue), then close.

        This is what ``logging.shutdown()`` does to every handler at exit: the listener
        drains into its sinks (and a loss, if any, is said on stderr) before they close.

        A named handler that a :func:`logging.config.dictConfig` re-run is replacing keeps
        what is still logged to it afterwards for its successor: dictConfig closes the old
        handlers before it attaches the new ones to the loggers, and a thread logging
        meanwhile must not lose records. The records wait in a new bounded queue until a
        handler of the same name is made (see :meth:`set_name`), which then writes them.
        Such a re-run is told from a plain shutdown by logging's table of named handlers,
        which dictConfig empties first.
        """
        listener = self.listener
        q = self.queue
        name = self.name
        handlers: Any = logging._handlers  # type: ignore[attr-defined]
        if (
            listener is not None
            and name
            and handlers.get(name) is not self
            and not self._retired
            and isinstance(q, RecordQueue)
            and not sys.is_finalizing()
        ):
            self._retired = True
            holding = RecordQueue(q.maxsize, q.overflow, q.timeout, max_bytes=q.max_bytes)
            self.queue = holding  # later records wait here...
            # ...and so do those that raced past the swap. Forward before stopping: a
            # record put into the old queue after its listener's last drain would
            # otherwise be counted lost at stop.
            q.forward(holding)
            with _logging_lock_released():
                listener.stop()
            with _orphans_lock:
                previous = _orphans.get(name)
                _orphans[name] = holding
            if previous is not None:
                previous.forward(holding)
        elif isinstance(listener, QueueListener):
            with _logging_lock_released():
                listener.stop()
            _exit.report_losses([listener])
        elif getattr(listener, "_thread", None):
            with _logging_lock_released():
                listener.stop()  # type: ignore[union-attr]
        super().close()


@contextlib.contextmanager
def _logging_lock_released() -> Iterator[None]:
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


def _freeze_message(record: logging.LogRecord, d: dict[str, Any]) -> None:
    """Make a non-str ``msg`` safe for later: a structlog event dict frozen, else rendered."""
    msg = d["msg"]
    if msg.__class__ is dict and "event" in msg:  # structlog's ProcessorFormatter recipe
        msg = freeze_event(msg)
    if msg.__class__ is not EventDict:
        d["msg"] = get_message(record)
        d["args"] = None
        return
    if d["exc_info"] is None and "exc_info" in msg:
        d["exc_info"] = msg["exc_info"]
    args = d["args"]
    if args and (type(args) is not tuple or any(type(arg) not in IMMUTABLE_TYPES for arg in args)):
        rendered: logging.LogRecord = _new_record(_LogRecord)
        rendered.__dict__ = {"msg": msg, "args": args}
        msg = EventDict(msg)
        msg["event"] = get_message(rendered)
        d["args"] = None
    d["msg"] = msg
