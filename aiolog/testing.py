"""Helpers for testing code that logs through aiolog (aiolog's own tests use them too).

:func:`capture` collects the records logged inside a ``with`` block, at once, on the thread
that logs: no flush, no listener, whether or not :func:`aiolog.configure` ran. pytest's
``caplog`` does not see records until the pipeline is flushed, because ``configure()``
puts its handler behind the queue; the ``aiolog_records`` fixture (this package's pytest
plugin) is :func:`capture` for one test.

:class:`CaptureSink` is a sink that keeps what it is given in memory; with
:meth:`CaptureSink.hold` it stalls on purpose, and with ``fail=`` it raises, so tests can
drive the slow-sink and failing-sink paths with barriers instead of sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence

from aiolog.sinks._base import Sink

__all__ = ["CaptureSink", "Captured", "capture"]


class Captured(logging.Handler):
    """The handler :func:`capture` attaches: it keeps every record it sees, in order.

    It runs on the thread that logs and never formats: :attr:`records` are the very
    ``LogRecord`` objects the loggers made (aiolog's queue handler leaves them untouched).
    :func:`aiolog.configure` leaves it on the root logger, next to the queue handler,
    instead of moving it behind the queue as it does the root's other handlers.
    """

    aiolog_stays_on_root = True

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record."""
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        """``record.getMessage()`` of each record, in order."""
        return [record.getMessage() for record in self.records]

    def clear(self) -> None:
        """Forget the records captured so far."""
        self.records.clear()

    def __repr__(self) -> str:
        return f"<aiolog.testing.Captured records={len(self.records)}>"


@contextlib.contextmanager
def capture(level: int | str = logging.NOTSET, logger: str | None = None) -> Iterator[Captured]:
    """Collect the records logged inside the block, on the logging thread, at once.

    A handler is attached to ``logger`` (the root logger by default) for the block; it is
    detached afterwards. The sinks get every record as usual. With ``level``, the records
    below it are left out, and the logger's own level is lowered to it for the block if it
    is higher (as ``caplog.set_level`` does), so ``capture("DEBUG")`` sees debug records
    even after ``configure(level="INFO")``; they then reach the sinks too, whose own levels
    still apply. Without it, the block sees what the loggers' levels let through.

    ::

        with aiolog.testing.capture("INFO") as logs:
            handle_request()
        assert ["request handled"] == logs.messages
    """
    target = logging.getLogger(logger)
    handler = Captured(logging._checkLevel(level))  # type: ignore[attr-defined]
    saved = target.level
    lower = bool(handler.level) and target.getEffectiveLevel() > handler.level
    if lower:
        target.setLevel(handler.level)
    target.addHandler(handler)
    try:
        yield handler
    finally:
        target.removeHandler(handler)
        if lower and target.level == handler.level:
            target.setLevel(saved)


class CaptureSink(Sink):
    """A sink that appends every record it is asked to write to :attr:`records`.

    :param name: the sink's name in ``stats()``.
    :param fail: an exception to raise from every :meth:`write` (None: succeed).
    """

    def __init__(
        self,
        name: str = "capture",
        *,
        fail: BaseException | None = None,
        level: int | str = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        self.url = f"capture:{name}"
        self.name = name
        self.fail = fail
        self.records: list[logging.LogRecord] = []
        self.batches: list[int] = []
        self.closed_count = 0
        self._arrived = threading.Condition()
        self._gate = threading.Event()
        self._gate.set()
        self.entered = threading.Event()
        """Set when a :meth:`write` has started (useful with :meth:`hold`)."""

    @property
    def messages(self) -> list[str]:
        """The rendered message of each captured record, in order."""
        return [r.message if "message" in r.__dict__ else r.getMessage() for r in self.records]

    def hold(self) -> None:
        """Make the next writes wait until :meth:`release`: a sink that stalls."""
        self._gate.clear()

    def release(self) -> None:
        """Let held writes go on."""
        self._gate.set()

    async def write(self, records: Sequence[logging.LogRecord]) -> None:
        """Capture the batch (after waiting while held, without blocking the loop)."""
        self.entered.set()
        if not self._gate.is_set():
            await asyncio.get_running_loop().run_in_executor(self.executor, self._gate.wait)
        if self.fail is not None:
            raise self.fail
        with self._arrived:
            self.batches.append(len(records))
            self.records.extend(records)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` records were captured; False on timeout."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.records) >= count, timeout)

    async def aclose(self) -> None:
        """Count closes (a sink may be opened and closed several times)."""
        self.closed_count += 1
