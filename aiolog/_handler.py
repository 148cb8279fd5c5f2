"""The emit path: :class:`QueueHandler`, which never blocks and never raises.

Everything here runs on the thread that logs, usually the event loop's, so it does the
minimum: copy the record (other handlers of the same logger must see it unmodified),
freeze what could change before the listener formats it, capture the asyncio context, and
offer the copy to a bounded queue. No formatter runs here, no traceback is rendered (that
would read source files through ``linecache``), and no lock is taken.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import logging.handlers
import queue as queue_module
import sys
import threading
from typing import Any

from aiolog._context import ORIGIN_TASK, callback_name
from aiolog._executor import INTERNAL_THREADS
from aiolog._queue import Overflow, RecordQueue, _Counter
from aiolog._record import IMMUTABLE_TYPES, get_message

__all__ = ["QueueHandler"]

_get_running_loop = asyncio._get_running_loop
_current_task = asyncio.current_task
_copy_context = contextvars.copy_context
_origin_task = ORIGIN_TASK.get
_get_ident = threading.get_ident
_new_record = logging.LogRecord.__new__
_LogRecord = logging.LogRecord
_NEEDS_TASKNAME = sys.version_info < (3, 12)


def _coro_name(task: asyncio.Task[Any]) -> str | None:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or getattr(coro, "__name__", None)


class QueueHandler(logging.handlers.QueueHandler):
    """A :class:`logging.handlers.QueueHandler` whose :meth:`emit` never blocks.

    ``QueueHandler(queue)`` works like the stdlib class. Without a queue, the handler makes
    an :class:`aiolog.RecordQueue` with ``maxsize``, ``overflow`` and ``timeout``; a queue
    that is not a ``RecordQueue`` (say a ``queue.Queue``) is used as it is, with records it
    refuses (``queue.Full``) counted as dropped.

    Per record, on the caller's thread, it:

    * copies the record, so other handlers of the logger see it unmodified;
    * keeps ``msg % args`` for the listener when every argument is an immutable scalar, and
      renders it now otherwise (a list or an object could change before the listener runs);
    * records the asyncio task (``taskName``, backfilled on 3.10/3.11), its coroutine's
      qualified name (``aiolog_coro``) and a :mod:`contextvars` snapshot (``aiolog_context``);
    * offers the copy to the queue, which applies the overflow policy and counts drops.

    Records logged on aiolog's own threads (the listener and sink workers) are counted in
    :attr:`internal_dropped` and not queued, so a sink that logs cannot feed itself forever.
    """

    listener: logging.handlers.QueueListener | None
    queue: Any  # a RecordQueue, or any object with put_nowait()

    def __init__(
        self,
        queue: Any = None,
        *,
        maxsize: int = 10_000,
        overflow: Overflow = "drop_newest",
        timeout: float = 1.0,
        level: int | str = logging.NOTSET,
    ) -> None:
        if queue is None:
            queue = RecordQueue(maxsize, overflow, timeout)
        logging.handlers.QueueHandler.__init__(self, queue)
        self.listener = None
        self.setLevel(level)
        self._internal = _Counter()
        self._foreign_dropped = _Counter()

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
        """Prepare the record and offer it to the queue; never blocks, never raises."""
        try:
            if _get_ident() in INTERNAL_THREADS:
                self._internal.inc()
                return
            self.enqueue(self.prepare(record))
        except Exception:
            self.handleError(record)

    def enqueue(self, record: logging.LogRecord) -> None:
        """Offer to the queue under its overflow policy (a refusal is counted, not raised)."""
        q = self.queue
        if isinstance(q, RecordQueue):
            q.offer(record)
            return
        try:
            q.put_nowait(record)
        except queue_module.Full:
            self._foreign_dropped.inc()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return a copy of ``record`` that is safe to format later, on another thread."""
        d = record.__dict__.copy()
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
        if type(d["msg"]) is not str:
            d["msg"] = get_message(record)
            d["args"] = None
        loop = _get_running_loop()
        task = _current_task(loop) if loop is not None else None
        if task is None:
            # Off the task path: a loop callback, or a thread (maybe an asyncio.to_thread
            # worker, whose copied context names the task that asked for the work).
            if loop is not None:
                d["aiolog_callback"] = callback_name()
            else:
                ref = _origin_task()
                task = ref() if ref is not None else None
        if task is not None:
            if _NEEDS_TASKNAME or d.get("taskName") is None:
                d["taskName"] = task.get_name()
            d["aiolog_coro"] = _coro_name(task)
        elif _NEEDS_TASKNAME:
            d["taskName"] = None
        d["aiolog_context"] = _copy_context()
        copy: logging.LogRecord = _new_record(_LogRecord)
        copy.__dict__ = d
        return copy

    def close(self) -> None:
        """Stop an attached listener first (draining the queue), then close."""
        listener = self.listener
        if listener is not None:
            listener.stop()
        super().close()
