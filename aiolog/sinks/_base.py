"""The sink interface: a :class:`logging.Handler` whose real work is asynchronous.

A sink is what the listener writes to. Like an httpx transport it is small: one coroutine
that writes a batch, one that releases resources. It is still a ``logging.Handler`` so that
``logging.config.dictConfig`` can build it, give it a formatter and a level, and close it.

Lifecycle, driven by :class:`aiolog.QueueListener`:

``open()``
    Synchronous, idempotent, called on the listener's thread when the listener starts (and
    again in a forked child). Start worker threads here, never lazily: Python 3.12+ refuses
    to start threads during interpreter shutdown, when the exit drain runs.
``await write(records)``
    Called on the listener's event loop with a non-empty batch, in order, never
    concurrently with itself. Format with :meth:`logging.Handler.format`. Raise to report a
    failure: the listener counts the batch as dropped and records the error; or return how
    many records of the batch are known lost. Blocking work goes to :attr:`executor`, not
    the loop. Counters of the sink's own (retries...) come from :meth:`sink_stats`.
``await aclose()``
    Called on the listener's loop when the listener stops. Release connections and files; a
    later ``write`` may open them again.
``after_fork()``
    Called in a forked child before the listener restarts: forget, without closing, what
    belongs to the parent (sockets, file objects, threads).

Records reaching ``write`` are the listener's prepared copies: message rendered into
``record.message``, traceback into ``record.exc_text``. Sinks must not modify them: several
sinks read the same record object.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiolog._executor import DaemonExecutor

__all__ = ["Sink"]


class Sink(logging.Handler):
    """Base class of aiolog's native sinks.

    Used as an ordinary handler (attached to a logger directly rather than behind an
    :class:`aiolog.QueueHandler`), a sink still never blocks the caller: its :meth:`emit`
    hands the record to a private listener started for it on first use.
    """

    #: Text used in ``stats()`` and error messages: the sink's URL with secrets redacted.
    url: str = ""

    def __init__(self, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self._executor: DaemonExecutor | None = None
        self._direct: object | None = None

    @property
    def display_name(self) -> str:
        """The name stats and notices use: the handler's name, else its redacted URL."""
        return self.name or self.url or type(self).__name__

    @property
    def executor(self) -> DaemonExecutor:
        """This sink's own worker thread for blocking calls (created on first use)."""
        if self._executor is None:
            self._executor = DaemonExecutor(f"aiolog-sink:{self.display_name}")
        return self._executor

    def open(self) -> None:
        """Prepare to write; the default starts :attr:`executor`'s thread."""
        self.executor.start()

    async def write(self, records: Sequence[logging.LogRecord]) -> int | None:
        """Write a batch of records.

        Return None (or 0) when all were written, or how many of them are known lost (a
        network sink that delivered part of a batch). Raise when the whole batch failed.
        """
        raise NotImplementedError

    def sink_stats(self) -> dict[str, Any]:
        """Counters the sink keeps itself, merged into ``Pipeline.stats()``.

        ``errors`` and ``last_error`` are combined with the listener's own; other keys
        (a network sink's ``retries`` and ``connects``) are shown as they are. Default: none.
        """
        return {}

    async def aclose(self) -> None:
        """Release connections and files; the default does nothing."""

    def after_fork(self) -> None:
        """Forget the parent's resources in a forked child."""
        if self._executor is not None:
            self._executor.after_fork()
        self._direct = None

    def emit(self, record: logging.LogRecord) -> None:
        """Hand the record to a private listener: used only when attached directly."""
        try:
            from aiolog._listener import direct_handler_for

            direct_handler_for(self).handle(record)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        """Stop a private listener if one was started, then close as a handler."""
        from aiolog._listener import close_direct

        close_direct(self)
        super().close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_name!r} ({logging.getLevelName(self.level)})>"
