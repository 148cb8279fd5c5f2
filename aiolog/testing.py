"""Helpers for testing code that logs through aiolog (aiolog's own tests use them too).

:class:`CaptureSink` keeps what it is given in memory; with :meth:`CaptureSink.hold` it
stalls on purpose, and with ``fail=`` it raises, so tests can drive the slow-sink and
failing-sink paths with barriers instead of sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from aiolog.sinks._base import Sink

__all__ = ["CaptureSink"]


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
