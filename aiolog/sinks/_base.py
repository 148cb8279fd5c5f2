"""The sink interface: a :class:`logging.Handler` whose real work is asynchronous.

A sink is what the listener writes to. Like an httpx transport it is small: one coroutine
that writes a batch, one that releases resources. It is still a ``logging.Handler`` so that
``logging.config.dictConfig`` can build it, give it a formatter and a level, and close it.
A plain ``logging.Handler`` is adapted to the same interface once, when the listener
starts (:class:`aiolog.sinks._adapter.HandlerSink`): the listener knows one shape.

Lifecycle, driven by :class:`aiolog.QueueListener`:

``open()``
    Synchronous, idempotent, called on the listener's thread when the listener starts (and
    again in a forked child). Start worker threads here, never lazily: Python 3.12+ refuses
    to start threads during interpreter shutdown, when the exit drain runs.
``accepts(record)``
    Called on the listener's loop for each record that passed the level check: False
    leaves the record out (counted as ``filtered``). The default applies the handler's
    filters.
``await write(records)``
    Called on the listener's event loop with a non-empty batch, in order, never
    concurrently with itself. Format with :meth:`logging.Handler.format`. Raise to report a
    failure: the listener counts the batch as lost and records the error; or return how
    many records of the batch are known lost (an ``int``), or a :class:`WriteResult`.
    Blocking work goes to :attr:`executor`, not the loop. While ``write`` has not returned,
    the listener keeps the sink's next records in its bounded buffer; when that is full it
    stops taking records from the queue (backpressure) until the sink makes progress, or
    marks the sink stalled after ``stall_timeout`` seconds without any. Counters of the
    sink's own (retries...) come from :meth:`sink_stats`.
``await aclose()``
    Called on the listener's loop when the listener stops. Release connections and files; a
    later ``write`` may open them again.
``release()``
    Called after ``aclose``: let the sink's worker threads end.
``after_fork()``
    Called in a forked child before the listener restarts: forget, without closing, what
    belongs to the parent (sockets, file objects, threads).

Records reaching ``write`` are the listener's prepared copies: message rendered into
``record.message``, traceback into ``record.exc_text``. Sinks must not modify them: several
sinks read the same record object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

from aiolog._executor import DaemonExecutor
from aiolog._record import expose_context

__all__ = ["Sink", "WriteResult", "describe"]

_T = TypeVar("_T")


def describe(exc: BaseException) -> str:
    """``"TypeName: message"``, as stats and notices show errors (never empty)."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) and not str(exc):
        return "TimeoutError: timed out"
    return f"{type(exc).__name__}: {str(exc) or repr(exc)}"


class WriteResult(NamedTuple):
    """What a :meth:`Sink.write` may return when it did not write every record.

    ``lost``: records of the batch that did not make it (counted as dropped, cause
    "error"). ``filtered``: records the sink left out on purpose (a plain handler's own
    filters). The rest of the batch counts as written.
    """

    lost: int = 0
    filtered: int = 0


class Sink(logging.Handler):
    """Base class of aiolog's native sinks.

    Used as an ordinary handler (attached to a logger directly rather than behind an
    :class:`aiolog.QueueHandler`), a sink still never blocks the caller: its :meth:`emit`
    hands the record to a private listener started for it on first use.
    """

    #: Text used in ``stats()`` and error messages: the sink's URL with secrets redacted.
    url: str = ""

    #: The most records the listener hands to one :meth:`write` when more are waiting
    #: (``None``: the listener's ``max_batch``). A sink whose cost is per call (a thread
    #: hand-over, a request) rather than per record writes larger batches more cheaply.
    batch_records: int | None = None

    #: Made by :mod:`aiolog._direct` (imported with :mod:`aiolog`): the private queue
    #: handler of a sink attached straight to a logger, and what closes it. The sinks
    #: cannot import the handler and the listener, which import this module.
    private_handler: ClassVar[Callable[[Sink], logging.Handler]]
    close_private_pipeline: ClassVar[Callable[[Sink], None]]

    def __init__(self, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self._executor: DaemonExecutor | None = None
        self._direct: object | None = None
        #: The sink's own failures (formatting, writes, connects: one per failure, not
        #: per record), merged into ``stats()``.
        self.errors = 0
        #: The latest of them, ``"TypeName: message"`` (secrets redacted).
        self.last_error: str | None = None

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

    def accepts(self, record: logging.LogRecord) -> bool:
        """True when the sink's filters let ``record`` through (the listener asks)."""
        return not self.filters or bool(self.filter(record))

    async def write(self, records: Sequence[logging.LogRecord]) -> int | WriteResult | None:
        """Write a batch of records.

        Return None (or 0) when all were written, or how many of them are known lost (a
        network sink that delivered part of a batch). Raise when the whole batch failed.
        """
        raise NotImplementedError

    def render(
        self, records: Iterable[logging.LogRecord], encode: Callable[[logging.LogRecord], _T]
    ) -> Iterator[_T]:
        """Yield ``encode(record)`` for each record; a record it fails on is left out.

        The one place a formatting failure is decided: the record is lost (a sink counts
        what it did not write as lost), the failure is noted in :attr:`errors` and
        :attr:`last_error`, and nothing is printed (``handleError`` would print a
        traceback per record). Each result is yielded as it is made, so a sink can append
        it to its buffer and let it go at once.
        """
        for record in records:
            try:
                yield encode(record)
            except Exception as exc:
                self.note_error(exc)

    def format(self, record: logging.LogRecord) -> str:
        """Format with the sink's formatter, which sees the captured context either way.

        A formatter that copies the record from its ``__dict__`` (structlog's
        ``ProcessorFormatter``) finds ``aiolog_context`` there (see
        :func:`aiolog._record.expose_context`).
        """
        if self.formatter is not None:
            expose_context(record)
        return super().format(record)

    def note_error(self, error: BaseException | str) -> None:
        """Count a failure of the sink's own and remember it as :attr:`last_error`."""
        self.errors += 1
        text = error if isinstance(error, str) else describe(error)
        self.last_error = self._redact(text)

    def _redact(self, text: str) -> str:
        """Hook for sinks whose errors may quote a secret; the default changes nothing."""
        return text

    def sink_stats(self) -> dict[str, Any]:
        """Counters the sink keeps itself, merged into ``Pipeline.stats()``.

        ``errors`` and ``last_error`` are combined with the listener's own; other keys
        (a network sink's ``retries`` and ``connects``) are shown as they are.
        """
        return {"errors": self.errors, "last_error": self.last_error}

    async def aclose(self) -> None:
        """Release connections and files; the default does nothing."""

    def release(self) -> None:
        """Let the worker thread end once its queued work is done (after :meth:`aclose`)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def after_fork(self) -> None:
        """Forget the parent's resources in a forked child."""
        if self._executor is not None:
            self._executor.after_fork()
        self._direct = None

    def emit(self, record: logging.LogRecord) -> None:
        """Hand the record to a private listener: used only when attached directly."""
        try:
            Sink.private_handler(self).handle(record)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        """Stop a private listener if one was started, then close as a handler."""
        Sink.close_private_pipeline(self)
        super().close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_name!r} ({logging.getLevelName(self.level)})>"
