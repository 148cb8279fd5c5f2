"""Run any plain :class:`logging.Handler` as a sink, off the listener's loop.

A handler the user already has (a ``SysLogHandler`` from dictConfig, a ``FileHandler``,
a third-party one) does blocking I/O in ``emit``. The adapter gives it its own daemon
worker thread, so it keeps the isolation of native sinks: when it stalls, only its own
buffer fills.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from collections.abc import Sequence
from typing import Any

from aiolog._executor import DaemonExecutor
from aiolog._record import CapturedRecord
from aiolog.sinks._base import WriteResult

__all__ = ["HandlerSink", "forget_stuck_handlers"]

_new_record = logging.LogRecord.__new__
#: Adapters let go of while their worker was still inside the handler (see release()).
_let_go_busy: weakref.WeakSet[HandlerSink] = weakref.WeakSet()


class HandlerSink:
    """Drive ``handler`` from the listener: batches go to a worker thread of its own.

    It has the interface of :class:`aiolog.sinks.Sink`, so the listener treats every sink
    alike. Each record is handed over as a shallow copy: stdlib formatters write
    ``record.message``, ``record.asctime`` and ``record.exc_text`` into the record they
    format, and filters may add attributes, and two handlers on two worker threads must not
    race on one object. The handler's filters therefore run on its worker, on its copy
    (:meth:`accepts` lets every record through), and what they leave out is reported as
    filtered.

    The handler's own ``handleError`` (which prints a traceback per failed record) is
    replaced, while the adapter is attached, by one that counts the failure; the listener
    reports failures at a bounded rate instead.
    """

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler
        self.executor = DaemonExecutor(f"aiolog-sink:{self.display_name}")
        self.errors = 0
        self.last_error: str | None = None
        self._failed_in_batch = 0
        self._busy = 0  # batches the worker is in (changed on the worker thread only)

    @property
    def display_name(self) -> str:
        """The handler's name, else its class name."""
        return self.handler.name or type(self.handler).__name__

    @property
    def level(self) -> int:
        """The handler's level."""
        return self.handler.level

    def open(self) -> None:
        """Start the worker thread and route the handler's errors to this adapter."""
        self.executor.start()
        self.handler.handleError = self._handle_error  # type: ignore[method-assign]

    def accepts(self, record: logging.LogRecord) -> bool:
        """Always True: the handler's filters run on its worker, on its own copy."""
        return True

    def _handle_error(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        self.errors += 1
        self._failed_in_batch += 1
        self.last_error = f"{type(exc).__name__}: {exc}" if exc is not None else "handler error"

    def _handle_batch(self, records: Sequence[logging.LogRecord]) -> WriteResult:
        self._failed_in_batch = 0
        filtered = 0
        handler = self.handler
        self._busy += 1
        try:
            for record in records:
                copy: logging.LogRecord = _new_record(logging.LogRecord)
                copy.__dict__ = record.__dict__.copy()
                if isinstance(record, CapturedRecord):  # its context is kept in a slot
                    copy.aiolog_context = getattr(record, "aiolog_context", None)
                try:
                    if handler.handle(copy) is False:
                        filtered += 1
                except Exception as exc:  # a handler that raises past its own emit guard
                    self._handle_error_from(exc)
        finally:
            self._busy -= 1
        return WriteResult(lost=self._failed_in_batch, filtered=filtered)

    def _handle_error_from(self, exc: BaseException) -> None:
        self.errors += 1
        self._failed_in_batch += 1
        self.last_error = f"{type(exc).__name__}: {exc}"

    async def write(self, records: Sequence[logging.LogRecord]) -> WriteResult:
        """Hand the batch to the worker; say how many records failed or were filtered."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._handle_batch, records)

    def sink_stats(self) -> dict[str, Any]:
        """The failures the adapter counted (``errors``, ``last_error``)."""
        return {"errors": self.errors, "last_error": self.last_error}

    async def aclose(self) -> None:
        """Flush the handler on its worker.

        The handler is not closed: it belongs to whoever made it (``logging.shutdown``
        closes it at exit).
        """
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.handler.flush)

    def release(self) -> None:
        """Give the handler back its own ``handleError`` and let the worker thread end.

        A worker still inside the handler (the stop's deadline passed during a write) is
        remembered: see :func:`forget_stuck_handlers`.
        """
        if self.handler.__dict__.get("handleError") == self._handle_error:
            del self.handler.__dict__["handleError"]
        if self._busy:
            _let_go_busy.add(self)
        self.executor.shutdown(wait=False)

    def after_fork(self) -> None:
        """Forget the parent's worker thread."""
        self.executor.after_fork()

    def __repr__(self) -> str:
        return f"<HandlerSink {self.handler!r}>"


def forget_stuck_handlers() -> list[logging.Handler]:
    """Keep ``logging.shutdown()`` away from handlers stuck in ``emit()``; return them.

    A handler whose ``emit()`` never returns (a hung disk, a socket without a timeout)
    holds its lock; at exit ``logging.shutdown()`` takes every handler's lock to flush and
    close it, and would wait for that one forever, long after the exit drain gave up on it.
    For each adapter let go of while its worker was inside the handler, and still is, the
    handler is taken off logging's list of handlers to shut down (its records were counted
    as lost by the drain). Called at interpreter exit, after the drain.
    """
    stuck = [adapter.handler for adapter in list(_let_go_busy) if adapter._busy]
    if stuck:
        with logging._lock:  # type: ignore[attr-defined]
            handler_list: list[Any] = logging._handlerList  # type: ignore[attr-defined]
            handler_list[:] = [ref for ref in handler_list if ref() not in stuck]
    return stuck
