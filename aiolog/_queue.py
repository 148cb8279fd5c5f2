"""The bounded record queue between the emit path and the listener.

:class:`RecordQueue` is a :class:`queue.SimpleQueue` (a C-implemented, lock-free-for-the-
caller FIFO) with a bound, an overflow policy and exact counters. It speaks the stdlib
queue protocol (``put_nowait``, ``get``, ``qsize``...) so the stdlib classes can use it,
and adds :meth:`offer`, the never-raising, never-blocking call the emit path uses.

Waking the listener costs a system call, so the producer does it only when the listener
said it is idle: the listener sets :attr:`RecordQueue.idle`, checks the queue once more,
and sleeps; the first :meth:`offer` after that sees the flag and wakes it. While records
flow, the listener drains in batches on its own schedule and producers never wake it.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any, Literal

from aiolog._record import unpack

__all__ = ["OVERFLOW_POLICIES", "Overflow", "RecordQueue"]

Overflow = Literal["drop_newest", "drop_oldest", "block"]
OVERFLOW_POLICIES: tuple[Overflow, ...] = ("drop_newest", "drop_oldest", "block")

_get_running_loop = asyncio._get_running_loop


class _Counter:
    """A counter whose increment is one C call, atomic under the GIL from any thread."""

    __slots__ = ("_count", "inc")

    def __init__(self) -> None:
        self._count = itertools.count()
        self.inc: Callable[[], int] = self._count.__next__

    @property
    def value(self) -> int:
        # repr is "count(N)" where N is the next value, i.e. the number of increments.
        return int(repr(self._count)[6:-1])


class RecordQueue:
    """A bounded FIFO of log records with an explicit overflow policy.

    :param maxsize: the most records held at once (default 10 000). Must be positive.
    :param overflow: what :meth:`offer` does when the queue is full:

        ``"drop_newest"`` (default)
            reject the new record; it is counted in ``dropped``.
        ``"drop_oldest"``
            evict the oldest queued record to make room; the evicted one is counted.
        ``"block"``
            wait up to ``timeout`` seconds for room, then drop. A thread that runs an
            event loop never waits (that would stall every task): it drops at once.
    :param timeout: the longest ``"block"`` waits, in seconds (default 1.0).

    Counters are exact: ``enqueued`` counts accepted records (evicted ones included),
    ``dropped`` every record lost to overflow.
    """

    def __init__(
        self, maxsize: int = 10_000, overflow: Overflow = "drop_newest", timeout: float = 1.0
    ) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize <= 0:
            raise ValueError(f"maxsize must be a positive integer, not {maxsize!r}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(
                f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, not {overflow!r}"
            )
        if not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"timeout must be a non-negative number, not {timeout!r}")
        self.maxsize = maxsize
        self.overflow: Overflow = overflow
        self.timeout = float(timeout)
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._enqueued = _Counter()
        self._dropped = _Counter()
        self._high_water = 0
        #: Set by the listener when it goes to sleep; cleared by the producer that wakes it.
        self.idle = False
        #: Called (once per idle period) by a producer to wake the listener.
        self.wake: Callable[[], None] | None = None
        self._space = threading.Condition(threading.Lock())
        self._blocked = 0
        #: Set by :meth:`forward`: the queue that takes over once this one is retired.
        self.forward_to: RecordQueue | None = None
        self.offer: Callable[[Any], bool] = self._choose_offer()

    def __repr__(self) -> str:
        return (
            f"<RecordQueue maxsize={self.maxsize} overflow={self.overflow!r} "
            f"depth={self._q.qsize()} dropped={self.dropped}>"
        )

    # -- counters -------------------------------------------------------------------------

    @property
    def enqueued(self) -> int:
        """Records accepted so far."""
        return self._enqueued.value

    @property
    def dropped(self) -> int:
        """Records lost to overflow so far."""
        return self._dropped.value

    @property
    def high_water(self) -> int:
        """The deepest the queue has been seen (sampled when the listener drains)."""
        return max(self._high_water, self._q.qsize())

    def count_dropped(self) -> None:
        """Count one record lost before it reached the queue (used by the handler)."""
        self._dropped.inc()

    # -- producer side --------------------------------------------------------------------

    def _choose_offer(self) -> Callable[[Any], bool]:
        return {
            "drop_newest": self._offer_drop_newest,
            "drop_oldest": self._offer_drop_oldest,
            "block": self._offer_block,
        }[self.overflow]

    def _accepted(self, record: Any) -> bool:
        self._q.put(record)
        self._enqueued.inc()
        if self.forward_to is not None:  # retired by a reconfigure: pass it on
            self._forward()
            return True
        if self.idle:
            self.idle = False
            wake = self.wake
            if wake is not None:
                wake()
        return True

    def _offer_drop_newest(self, record: Any) -> bool:
        # _accepted() inlined: this is the default policy, on every emit.
        q = self._q
        if q.qsize() >= self.maxsize:
            self._dropped.inc()
            return False
        q.put(record)
        self._enqueued.inc()
        if self.forward_to is not None:  # retired by a reconfigure: pass it on
            self._forward()
        elif self.idle:
            self.idle = False
            wake = self.wake
            if wake is not None:
                wake()
        return True

    def _offer_drop_oldest(self, record: Any) -> bool:
        q = self._q
        while q.qsize() >= self.maxsize:
            try:
                q.get_nowait()
            except queue.Empty:
                break
            self._dropped.inc()
        return self._accepted(record)

    def _offer_block(self, record: Any) -> bool:
        if self._q.qsize() < self.maxsize:
            return self._accepted(record)
        if _get_running_loop() is not None or self.timeout == 0:
            # Waiting here would freeze every task of the loop: drop instead.
            self._dropped.inc()
            return False
        with self._space:
            self._blocked += 1
            try:
                if self._space.wait_for(lambda: self._q.qsize() < self.maxsize, self.timeout):
                    return self._accepted(record)
            finally:
                self._blocked -= 1
        self._dropped.inc()
        return False

    def forward(self, target: RecordQueue) -> None:
        """Retire this queue: move what it holds to ``target``, and every later record too.

        Used when a pipeline is replaced. A producer that picked the old handler just
        before the swap may still put a record here after the old listener has stopped;
        it then finds :attr:`forward_to` set (it checks after its put) and moves the
        record on, or this call finds the record (it drains after setting the
        attribute). Either way the record reaches ``target`` exactly once.
        """
        self.forward_to = target
        self._forward()

    def _forward(self) -> None:
        target = self.forward_to
        assert target is not None
        get = self._q.get_nowait
        while True:
            try:
                item = get()
            except queue.Empty:
                break
            target.offer(item)
        if self._blocked:  # producers waiting for room here: there is room now
            with self._space:
                self._space.notify_all()

    def put_marker(self, item: Any) -> None:
        """Enqueue a control item for the listener, bypassing the bound and the counters.

        Always wakes the listener, even mid-linger: a flush should not wait for the next
        batch boundary.
        """
        self._q.put(item)
        self.idle = False
        if self.wake is not None:
            self.wake()

    # -- consumer side --------------------------------------------------------------------

    def drain(self, limit: int) -> list[Any]:
        """Take up to ``limit`` items without blocking (records unpacked, see :meth:`offer`)."""
        q = self._q
        depth = q.qsize()
        if depth > self._high_water:
            self._high_water = depth
        items: list[Any] = []
        append, get = items.append, q.get_nowait
        try:
            for _ in range(min(depth, limit)):
                append(unpack(get()))
        except queue.Empty:  # forward() on another thread took the rest
            pass
        if self._blocked:
            with self._space:
                self._space.notify_all()
        return items

    def discard_all(self) -> int:
        """Drop everything queued (counted); return how many."""
        n = 0
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                return n
            self._dropped.inc()
            n += 1

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's records, counters and waiters."""
        self._q = queue.SimpleQueue()
        self._enqueued = _Counter()
        self._dropped = _Counter()
        self._high_water = 0
        self._space = threading.Condition(threading.Lock())
        self._blocked = 0
        self.idle = False
        self.wake = None

    # -- the stdlib queue protocol --------------------------------------------------------

    def qsize(self) -> int:
        """Number of queued records (approximate while producers run)."""
        return self._q.qsize()

    def empty(self) -> bool:
        """True when nothing is queued."""
        return self._q.empty()

    def full(self) -> bool:
        """True when the bound is reached."""
        return self._q.qsize() >= self.maxsize

    def put_nowait(self, item: Any) -> None:
        """Stdlib protocol: enqueue per the overflow policy; raise ``queue.Full`` on a drop."""
        if not self.offer(item):
            raise queue.Full

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Stdlib protocol; the overflow policy decides, ``block``/``timeout`` are ignored."""
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        """Stdlib protocol: take one item or raise ``queue.Empty``."""
        item = unpack(self._q.get_nowait())
        if self._blocked:
            with self._space:
                self._space.notify_all()
        return item

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Stdlib protocol: take one item, waiting if asked (for stdlib listeners)."""
        item = unpack(self._q.get(block, timeout))
        if self._blocked:
            with self._space:
                self._space.notify_all()
        return item

    def task_done(self) -> None:
        """Stdlib protocol; nothing to do."""
