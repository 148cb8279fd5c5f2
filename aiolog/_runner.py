"""One sink's buffer, counters and writing task; the flush barrier; the sink interface.

The listener (:mod:`aiolog._listener`) owns one :class:`SinkRunner` per sink. A runner
buffers what the pump hands it (level and filters applied, counted as ``filtered``), writes
it in batches, in order, never two writes at once, counts every record once (written,
filtered, or dropped by cause), passes flush barriers in order, and writes the loss notices
into its sink's own output. What it needs of its listener is :class:`Owner`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiolog.sinks._adapter import HandlerSink
from aiolog.sinks._base import Sink, WriteResult

__all__ = ["Barrier", "Mark", "Owner", "SinkLike", "SinkRunner", "adapt"]

_monotonic = time.monotonic

_CAUSE_TEXT = {
    "stalled": "while the sink was stalled",
    "error": "to errors",
    "deadline": "to the stop deadline",
}


class Owner(Protocol):
    """What a runner reads of the listener that owns it."""

    buffer_size: int
    buffer_bytes: int
    max_batch: int
    respect_handler_level: bool
    report_interval: float

    def room_freed(self) -> None: ...
    def loss_total(self) -> int: ...
    def loss_table(self) -> dict[str, dict[str, int]]: ...
    def runner_named(self, key: str) -> SinkRunner | None: ...
    def queue_policy(self) -> str: ...
    def notice_record(
        self, level: int, message: str, extra: dict[str, Any] | None = None
    ) -> logging.LogRecord: ...


class SinkLike(Protocol):
    """What the listener needs of a sink: :class:`aiolog.sinks.Sink` has it all.

    A plain :class:`logging.Handler` is adapted to it by
    :class:`aiolog.sinks._adapter.HandlerSink`.
    """

    @property
    def display_name(self) -> str: ...
    @property
    def level(self) -> int: ...
    def open(self) -> None: ...
    def accepts(self, record: logging.LogRecord) -> bool: ...
    async def write(self, records: list[logging.LogRecord]) -> int | WriteResult | None: ...
    def sink_stats(self) -> dict[str, Any]: ...
    async def aclose(self) -> None: ...
    def release(self) -> None: ...
    def after_fork(self) -> None: ...


def adapt(handler: logging.Handler) -> SinkLike:
    """The sink interface of ``handler``: itself for a Sink, an adapter otherwise."""
    if isinstance(handler, Sink):
        return handler
    return HandlerSink(handler)


class Barrier:
    """Counts sinks that have written everything queued before it; then wakes waiters.

    :attr:`lost` becomes True when a record queued before the barrier was lost on the
    way (each runner checks its counters when it takes the barrier and when it passes it),
    so a flush can say "all written" or "not all written", not only "done".
    """

    __slots__ = ("_callbacks", "_event", "_lock", "_pending", "lost", "snapshot")

    def __init__(self, snapshot: dict[int, int], lost: bool = False) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._pending = 0
        self._callbacks: list[Callable[[], None]] = []
        #: Each runner's loss total when the flush was asked for, by ``id(runner)``.
        self.snapshot = snapshot
        self.lost = lost

    def expect(self, n: int) -> None:
        self._pending = n
        if n == 0:
            self._done()

    def arrive(self) -> None:
        self._pending -= 1  # only the listener loop thread touches it
        if self._pending == 0:
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def wait(self, timeout: float | None) -> bool:
        """True when every sink passed the barrier within ``timeout`` and none lost a record."""
        return self._event.wait(timeout) and not self.lost


class Mark:
    """A barrier's place in one runner's buffer, with that runner's write losses then."""

    __slots__ = ("barrier", "write_losses")

    def __init__(self, barrier: Barrier, write_losses: int) -> None:
        self.barrier = barrier
        self.write_losses = write_losses


class SinkRunner:
    """One sink's bounded buffer, its counters, and the task that writes it.

    The listener's pump fills the buffer (:meth:`offer`, :meth:`put_barrier`); the task
    (:meth:`run`) empties it into the sink. The buffer is what isolates sinks from each
    other: a slow sink holds the pump back only through :meth:`room` while it makes
    progress, and once it is *stalled* it sheds its own records (counted) instead.
    Every record offered ends in exactly one counter: written, filtered, or dropped by
    cause (stalled, filter error, write error, deadline).
    """

    def __init__(self, handler: logging.Handler, listener: Owner) -> None:
        self.handler = handler
        self.sink = adapt(handler)
        self.listener = listener
        self.name = self.sink.display_name
        self.maxsize = listener.buffer_size
        self.max_bytes = listener.buffer_bytes
        # A sink may take larger batches than the pump hands out (a file: one hand-over to
        # its worker thread per batch, whatever its size).
        self.max_batch = max(listener.max_batch, getattr(self.sink, "batch_records", 0) or 0)
        self.check_level = listener.respect_handler_level
        self.buffer: collections.deque[Any] = collections.deque()
        #: The estimated size of each item in :attr:`buffer` (0 for marks).
        self.sizes: collections.deque[int] = collections.deque()
        #: Estimated size of the buffered records: rendered message and traceback + 256.
        self.bytes = 0
        self.offered = 0
        self.filtered = 0
        self.written = 0
        self.stalled_drops = 0
        self.filter_errors = 0
        self.write_errors = 0
        self.deadline_drops = 0
        self.notices = 0
        self.errors = 0
        #: The latest failure, the listener's or the sink's own (see _sample_sink_errors).
        self.last_error: str | None = None
        self._sink_errors_seen = 0
        self.inflight = 0
        #: True from when the sink was seen making no progress until it has caught up
        #: (written its whole buffer): it sheds instead of holding the pump back.
        self.stalled = False
        #: When the sink last showed progress (a write that wrote something), or started
        #: working after being idle: stall_timeout counts from here.
        self.progress_at = _monotonic()
        self.closing = False
        #: True while the task is working (not waiting for records).
        self.busy = False
        #: The task ended by the deadline (cancelled mid-write): no final notice then.
        self.stuck = False
        self.event: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None
        #: The name in stats() and notices (the display name, made unique by the listener).
        self.key = self.name
        #: Losses already said in a notice of this sink: by sink (or "queue") and cause.
        self.reported: dict[str, dict[str, int]] = {}
        self.reported_total = 0
        self.last_notice = -math.inf
        #: Write a notice at the next chance, whatever report_interval says (recovery).
        self.notice_now = False

    # -- counters -------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        return self.stalled_drops + self.filter_errors + self.write_errors + self.deadline_drops

    def losses(self) -> dict[str, int]:
        """This sink's losses so far, per cause (only causes with losses)."""
        by_cause = {
            "stalled": self.stalled_drops,
            "error": self.filter_errors + self.write_errors,
            "deadline": self.deadline_drops,
        }
        return {cause: n for cause, n in by_cause.items() if n}

    def unreported(self) -> dict[str, dict[str, int]]:
        """Losses (of every sink, and the queue's) not yet said in this sink's output."""
        if self.listener.loss_total() == self.reported_total:
            return {}
        new: dict[str, dict[str, int]] = {}
        for name, by_cause in self.listener.loss_table().items():
            seen = self.reported.get(name, {})
            diff = {c: n - seen.get(c, 0) for c, n in by_cause.items() if n > seen.get(c, 0)}
            if diff:
                new[name] = diff
        return new

    def stats(self) -> dict[str, Any]:
        own = dict(self.sink.sink_stats())
        errors = self.errors + own.pop("errors", 0)
        own_error = own.pop("last_error", None)
        last_error = self.last_error or own_error
        return {
            "offered": self.offered,
            "written": self.written,
            "filtered": self.filtered,
            "dropped": self.dropped,
            "dropped_stalled": self.stalled_drops,
            "dropped_error": self.filter_errors + self.write_errors,
            "dropped_deadline": self.deadline_drops,
            "buffered": self.offered - self.written - self.filtered - self.dropped,
            "buffered_bytes": self.bytes,
            "stalled": self.stalled,
            "notices": self.notices,
            "errors": errors,
            "last_error": last_error,
            **own,
        }

    # -- the pump's side ------------------------------------------------------------------

    def room(self) -> int:
        """How many more records the buffer takes before the pump must wait for it."""
        if self.bytes >= self.max_bytes and self.buffer:
            return 0
        return self.maxsize - len(self.buffer)

    def offer(self, records: list[logging.LogRecord], sizes: list[int]) -> None:
        """Buffer what this sink takes of ``records`` (``sizes``: their estimated sizes).

        The level (when asked) and :meth:`~aiolog.sinks.Sink.accepts` decide what is
        filtered out. The pump sends no more than :meth:`room` allows, so nothing is
        dropped here unless the sink is stalled and its buffer full. A filter that raises
        loses (and counts) that record only.
        """
        self.offered += len(records)
        level = self.sink.level if self.check_level else 0
        if level.__class__ is not int:
            try:
                level = int(level)
            except Exception as exc:  # a level that is not a number: the sink loses them
                self.errors += 1
                self.filter_errors += len(records)
                self.last_error = f"bad level {level!r}: {type(exc).__name__}: {exc}"
                return
        sink = self.sink
        buffer, buffered_sizes = self.buffer, self.sizes
        stalled = self.stalled
        maxsize, max_bytes = self.maxsize, self.max_bytes
        nbytes = self.bytes
        added = False
        for record, size in zip(records, sizes, strict=True):
            if record.levelno < level:
                self.filtered += 1
                continue
            try:
                if not sink.accepts(record):
                    self.filtered += 1
                    continue
            except Exception as exc:
                self.errors += 1
                self.filter_errors += 1
                self.last_error = f"filter failed: {type(exc).__name__}: {exc}"
                continue
            if stalled and (len(buffer) >= maxsize or (nbytes + size > max_bytes and nbytes)):
                self.stalled_drops += 1
                continue
            nbytes += size
            buffer.append(record)
            buffered_sizes.append(size)
            added = True
        self.bytes = nbytes
        if added:
            if not self.busy:  # starting to work after a rest: stall_timeout counts from now
                self.progress_at = _monotonic()
            assert self.event is not None
            self.event.set()

    def put_barrier(self, barrier: Barrier) -> None:
        """Queue a flush mark behind what is buffered; note a loss that came before it."""
        if self.dropped > barrier.snapshot.get(id(self), self.dropped):
            barrier.lost = True  # a record queued before the flush is already lost
        self.buffer.append(Mark(barrier, self.write_errors + self.deadline_drops))
        self.sizes.append(0)
        assert self.event is not None
        self.event.set()

    def discard(self, n: int) -> None:
        """Count ``n`` records offered and lost to the stop deadline (left in the queue)."""
        self.offered += n
        self.deadline_drops += n

    # -- the runner task ------------------------------------------------------------------

    async def run(self) -> None:
        """Write the buffer in batches, in order; pass flush marks; write due notices.

        The sink's task, for the listener's lifetime. It sleeps on :attr:`event` until the
        pump buffers something, then writes batches of up to :attr:`max_batch` records
        until the buffer is empty, telling the pump after each batch is taken that there
        is room again (it may be waiting for it). A flush mark ends the batch before it and
        is passed only once what came before was written, so a flush returns exactly when
        this sink has written everything logged before it. A notice of lost records is
        written when one is due, before and between batches, so that the sink that lost
        records says so in its own output. Returns once closing and the buffer is empty.
        """
        event = self.event
        assert event is not None
        buffer, sizes = self.buffer, self.sizes
        listener = self.listener
        while True:
            self.busy = False
            await event.wait()
            event.clear()
            self.busy = True
            if self.notice_due():
                await self.write_notice()
            while buffer:
                batch: list[logging.LogRecord] = []
                while buffer and len(batch) < self.max_batch:
                    item = buffer.popleft()
                    size = sizes.popleft()
                    if type(item) is Mark:
                        if batch:
                            await self._write(batch)
                            batch = []
                        self._pass(item)
                    else:
                        self.bytes -= size
                        batch.append(item)
                listener.room_freed()
                if batch:
                    await self._write(batch)
                if self.notice_due():
                    await self.write_notice()
            if self.closing:
                return

    def _sample_sink_errors(self) -> None:
        """Take the sink's own ``last_error`` as the latest when it counted a new failure."""
        own = self.sink.sink_stats()
        errors = own.get("errors", 0)
        if errors != self._sink_errors_seen:
            self._sink_errors_seen = errors
            self.last_error = own.get("last_error") or self.last_error

    def _pass(self, mark: Mark) -> None:
        """Arrive at the flush barrier, saying whether a record before it was lost."""
        barrier = mark.barrier
        if self.write_errors + self.deadline_drops > mark.write_losses:
            barrier.lost = True
        barrier.arrive()

    async def _write(self, batch: list[logging.LogRecord]) -> None:
        """Write one batch and count its outcome; never raises, except on cancellation.

        The sink's result says how many records it lost or filtered (see
        :class:`~aiolog.sinks.WriteResult`); an exception loses the whole batch. A write
        that wrote anything is progress: it resets the stall clock and, for a stalled
        sink, schedules a notice at once and ends the stall once the sink has caught up.
        Cancellation means the stop deadline passed mid-write: the batch is counted lost
        to the deadline.
        """
        n = len(batch)
        self.inflight = n
        try:
            result = await self.sink.write(batch)
        except asyncio.CancelledError:  # the stop deadline passed mid-write
            self.deadline_drops += n
            self.stuck = True
            raise
        except Exception as exc:
            self._sample_sink_errors()
            self.errors += 1
            self.write_errors += n
            self.last_error = f"{type(exc).__name__}: {exc}"
        else:
            self._sample_sink_errors()
            if isinstance(result, WriteResult):
                lost, filtered = result
            else:
                lost, filtered = (result if isinstance(result, int) else 0), 0
            lost = min(max(lost, 0), n)
            filtered = min(max(filtered, 0), n - lost)
            written = n - lost - filtered
            self.written += written
            self.write_errors += lost
            self.filtered += filtered
            if written or filtered:
                self.progress_at = _monotonic()
                if self.stalled:
                    self.notice_now = True  # say what was lost as soon as it writes again
                    if not self.offered - self.written - self.filtered - self.dropped:
                        self.stalled = False  # caught up: it holds the pump back again
        finally:
            self.inflight = 0

    # -- notices --------------------------------------------------------------------------

    def notice_due(self, final: bool = False) -> bool:
        """True when losses wait to be said here and the report interval allows it."""
        if not self.unreported():
            return False
        if final or self.notice_now:
            return True
        return _monotonic() - self.last_notice >= self.listener.report_interval

    async def write_notice(self) -> None:
        """Write one record saying what was lost since this sink's last notice.

        It names this sink's own losses first, then the other sinks' and the queue's, so
        that every output tells of a loss anywhere in the pipeline.
        """
        total_now = self.listener.loss_total()
        table = self.listener.loss_table()
        lost = self.unreported()
        if not lost:
            return
        total = sum(sum(by_cause.values()) for by_cause in lost.values())
        parts = []
        for name in sorted(lost, key=lambda name: (name != self.key, name == "queue", name)):
            by_cause = lost[name]
            if name == "queue":
                n = by_cause["queue_overflow"]
                parts.append(f"{n} to queue overflow ({self.listener.queue_policy()})")
                continue
            what = ", ".join(f"{n} {_CAUSE_TEXT[cause]}" for cause, n in by_cause.items())
            runner = self.listener.runner_named(name)
            error = runner.stats()["last_error"] if runner is not None else None
            if by_cause.get("error") and error:
                what += f" (last error: {error})"
            parts.append(f"{'this sink' if name == self.key else f'sink {name!r}'}: {what}")
        message = (
            f"aiolog lost {total} record{'s' if total != 1 else ''} since the last notice: "
            + "; ".join(parts)
        )
        record = self.listener.notice_record(
            logging.WARNING, message, {"aiolog_lost": lost, "aiolog_sink": self.key}
        )
        self.last_notice = _monotonic()
        self.notice_now = False
        try:
            result = await self.sink.write([record])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        if isinstance(result, WriteResult):
            failed, filtered = result
        else:
            failed, filtered = (result if isinstance(result, int) else 0), 0
        if failed:
            return
        if not filtered:
            self.notices += 1
        self.reported = table
        self.reported_total = total_now

    def abandon(self) -> None:
        """Count what is left in the buffer as lost to the deadline; release the marks."""
        for item in self.buffer:
            if type(item) is Mark:
                item.barrier.lost = True
                item.barrier.arrive()
            else:
                self.deadline_drops += 1
        self.buffer.clear()
        self.sizes.clear()
        self.bytes = 0
