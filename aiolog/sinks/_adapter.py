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
from collections.abc import Sequence

from aiolog._executor import DaemonExecutor
from aiolog._record import QueuedRecord

__all__ = ["HandlerSink"]

_new_record = logging.LogRecord.__new__


class HandlerSink:
    """Drive ``handler`` from the listener: batches go to a worker thread of its own.

    Each record is handed over as a shallow copy: stdlib formatters write
    ``record.message``, ``record.asctime`` and ``record.exc_text`` into the record they
    format, and two handlers on two worker threads must not race on one object.

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

    @property
    def display_name(self) -> str:
        """The handler's name, else its class name."""
        return self.handler.name or type(self.handler).__name__

    def open(self) -> None:
        """Start the worker thread and route the handler's errors to this adapter."""
        self.executor.start()
        self.handler.handleError = self._handle_error  # type: ignore[method-assign]

    def _handle_error(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        self.errors += 1
        self._failed_in_batch += 1
        self.last_error = f"{type(exc).__name__}: {exc}" if exc is not None else "handler error"

    def _handle_batch(self, records: Sequence[logging.LogRecord]) -> int:
        self._failed_in_batch = 0
        handle = self.handler.handle
        for record in records:
            copy: logging.LogRecord = _new_record(logging.LogRecord)
            copy.__dict__ = record.__dict__.copy()
            if record.__class__ is QueuedRecord:  # its context is kept in a slot
                copy.aiolog_context = record.aiolog_context
            try:
                handle(copy)
            except Exception as exc:  # a handler that raises past its own emit guard
                self._handle_error_from(exc)
        return self._failed_in_batch

    def _handle_error_from(self, exc: BaseException) -> None:
        self.errors += 1
        self._failed_in_batch += 1
        self.last_error = f"{type(exc).__name__}: {exc}"

    async def write(self, records: Sequence[logging.LogRecord]) -> int:
        """Hand the batch to the worker; return how many records the handler failed on."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._handle_batch, records)

    async def aclose(self) -> None:
        """Flush the handler (on its worker) and give it back its own error handling.

        The handler is not closed: it belongs to whoever made it (``logging.shutdown``
        closes it at exit).
        """
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, self.handler.flush)
        finally:
            self.detach()

    def detach(self) -> None:
        """Restore the handler's own ``handleError`` and let the worker thread end."""
        if self.handler.__dict__.get("handleError") == self._handle_error:
            del self.handler.__dict__["handleError"]
        self.executor.shutdown(wait=False)

    def after_fork(self) -> None:
        """Forget the parent's worker thread."""
        self.executor.after_fork()

    def __repr__(self) -> str:
        return f"<HandlerSink {self.handler!r}>"
