"""The bounded record queue between the emit path and the listener.

:class:`RecordQueue` is a :class:`queue.SimpleQueue` (a C-implemented, lock-free-for-the-
caller FIFO) with a bound in records and in estimated bytes, an overflow policy and exact
counters. It speaks the stdlib queue protocol (``put_nowait``, ``get``, ``qsize``...) so
the stdlib classes can use it, and adds :meth:`offer`, the never-raising call the emit
path uses.

It is the pipeline's burst buffer: when a sink is slower than the application, the
listener stops taking records and they wait here, in order (see :mod:`aiolog._listener`).

Memory is estimated without work on the common path: an ordinary record counts as
:data:`RECORD_BYTES`, so the byte bound is a count bound for them; only a record with a
long text or a traceback (:meth:`offer_sized`) carries its own estimate, added to and
taken from a running total under a lock.

Waking the listener costs a system call, so the producer does it only when the listener
said it is idle: the listener sets :attr:`RecordQueue.idle`, checks the queue once more,
and sleeps; the first :meth:`offer` after that sees the flag and wakes it. While records
flow, the listener drains in batches on its own schedule and producers never wake it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Literal

from aiolog import _options
from aiolog._record import unpack

__all__ = [
    "DEFAULT_MAXSIZE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "EXC_BYTES",
    "LARGE_TEXT",
    "OVERFLOW_POLICIES",
    "RECORD_BYTES",
    "Overflow",
    "RecordQueue",
]

Overflow = Literal["drop_newest", "drop_oldest", "block"]
OVERFLOW_POLICIES: tuple[Overflow, ...] = ("drop_newest", "drop_oldest", "block")

#: The estimated memory of one queued ordinary record (the record, what the handler
#: captured with it, a short message): a little above what one measures (docs/design.md).
RECORD_BYTES = 640
#: A record whose text (message and ``str``/``bytes`` arguments) is longer than this many
#: characters is counted by its size rather than as :data:`RECORD_BYTES`.
LARGE_TEXT = 512
#: What a record with a traceback is counted for beyond its text: the traceback keeps
#: its frames alive until the listener renders it.
EXC_BYTES = 4096

#: Default bound in records: a burst of this many ordinary records waits in the queue.
DEFAULT_MAXSIZE = 200_000
#: Default bound in estimated bytes (128 MiB): 200 000 ordinary records fit.
DEFAULT_MAX_BYTES = 128 * 1024 * 1024
#: Default longest wait of the ``block`` policy, in seconds: longer than the listener's
#: default stall timeout, so a thread waits out a stalled sink's pause rather than drop.
DEFAULT_TIMEOUT = 5.0

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


class _Sized:
    """A queued item that carries its own size estimate (a large record)."""

    __slots__ = ("extra", "item")

    def __init__(self, item: Any, extra: int) -> None:
        self.item = item
        #: Estimated bytes beyond :data:`RECORD_BYTES`.
        self.extra = extra


class RecordQueue:
    """A bounded FIFO of log records with an explicit overflow policy.

    :param maxsize: the most records held at once (default 200 000).
    :param overflow: what :meth:`offer` does when the queue is full:

        ``"drop_newest"`` (default)
            reject the new record; it is counted in ``dropped``.
        ``"drop_oldest"``
            evict the oldest queued record to make room; the evicted one is counted.
        ``"block"``
            a plain thread waits up to ``timeout`` seconds for room, then drops. It waits
            once the queue is half full: the other half is kept for producers that must
            not wait, above all a thread that runs an event loop (waiting there would
            stall every task), which drops only when the queue is wholly full.
    :param timeout: the longest ``"block"`` waits, in seconds (default 5).
    :param max_bytes: the bound in estimated bytes (default 128 MiB): an ordinary record
        counts as :data:`RECORD_BYTES`, a larger one as its text plus that (see
        :meth:`offer_sized`). A record alone in an empty queue is always taken.

    Counters are exact: ``enqueued`` counts accepted records (evicted ones included),
    ``dropped`` every record lost to overflow.
    """

    def __init__(
        self,
        maxsize: int = DEFAULT_MAXSIZE,
        overflow: Overflow = "drop_newest",
        timeout: float = DEFAULT_TIMEOUT,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        where = "RecordQueue()"
        maxsize = _options.count(where, "maxsize", maxsize)
        max_bytes = _options.size(where, "max_bytes", max_bytes)
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.overflow: Overflow = _options.choice(where, "overflow", overflow, OVERFLOW_POLICIES)
        self.timeout = _options.duration(where, "timeout", timeout)
        #: The count bound for ordinary records: both bounds in one number.
        self._limit = max(1, min(maxsize, max_bytes // RECORD_BYTES))
        #: Where ``block`` makes plain threads wait (half of both bounds).
        self._soft_limit = max(1, self._limit - self._limit // 2)
        self._soft_bytes = max_bytes - max_bytes // 2
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._enqueued = _Counter()
        self._dropped = _Counter()
        self._high_water = 0
        #: Estimated bytes of the queued large records beyond RECORD_BYTES each.
        self._extra = 0
        self._extra_lock = threading.Lock()
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
            f"<RecordQueue maxsize={self.maxsize} max_bytes={self.max_bytes} "
            f"overflow={self.overflow!r} depth={self._q.qsize()} dropped={self.dropped}>"
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

    @property
    def bytes(self) -> int:
        """The estimated memory of what is queued, in bytes."""
        return self._q.qsize() * RECORD_BYTES + self._extra

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

    def _full(self, extra: int) -> bool:
        """True when one more record of ``extra`` bytes beyond RECORD_BYTES does not fit."""
        depth = self._q.qsize()
        if not depth:
            return False
        if depth >= self._limit:
            return True
        return (depth + 1) * RECORD_BYTES + self._extra + extra > self.max_bytes

    def _has_room_for_waiters(self) -> bool:
        return self._q.qsize() < self._soft_limit and self.bytes < self._soft_bytes

    def _accepted(self, item: Any) -> bool:
        self._q.put(item)
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
        # _full() and _accepted() inlined: this is the default policy, on every emit.
        q = self._q
        depth = q.qsize()
        if depth >= self._limit or (
            self._extra and depth and (depth + 1) * RECORD_BYTES + self._extra > self.max_bytes
        ):
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

    def _offer_drop_oldest(self, record: Any, extra: int = 0) -> bool:
        q = self._q
        while self._full(extra):
            try:
                evicted = q.get_nowait()
            except queue.Empty:
                break
            if evicted.__class__ is _Sized:
                self._release(evicted.extra)
            self._dropped.inc()
        return self._accepted(record)

    def _offer_block(self, record: Any, extra: int = 0) -> bool:
        if not self._full(extra) and (
            self._has_room_for_waiters() or _get_running_loop() is not None
        ):
            return self._accepted(record)
        if _get_running_loop() is not None or self.timeout == 0:
            # Waiting here would freeze every task of the loop: drop instead.
            self._dropped.inc()
            return False
        with self._space:
            self._blocked += 1
            try:
                if self._space.wait_for(self._has_room_for_waiters, self.timeout):
                    return self._accepted(record)
            finally:
                self._blocked -= 1
        self._dropped.inc()
        return False

    def offer_sized(self, record: Any, size: int) -> bool:
        """:meth:`offer` for a large record whose estimated size is ``size`` bytes.

        The handler calls it for records with a long text or a traceback, so that the
        byte bound sees what they really hold.
        """
        extra = max(0, size - RECORD_BYTES)
        if self.overflow == "drop_newest" and self._full(extra):
            self._dropped.inc()
            return False
        item = _Sized(record, extra)
        with self._extra_lock:
            self._extra += extra
        if self.overflow == "drop_oldest":
            ok = self._offer_drop_oldest(item, extra)
        elif self.overflow == "block":
            ok = self._offer_block(item, extra)
        else:
            ok = self._accepted(item)
        if not ok:
            self._release(extra)
        return ok

    def _release(self, extra: int) -> None:
        with self._extra_lock:
            self._extra -= extra

    def _take(self, item: Any) -> Any:
        """The record a dequeued item stands for (its size released)."""
        if item.__class__ is _Sized:
            self._release(item.extra)
            item = item.item
        return unpack(item)

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
            if item.__class__ is _Sized:
                self._release(item.extra)
                target.offer_sized(item.item, item.extra + RECORD_BYTES)
            else:
                target.offer(item)
        self._notify_space()

    def put_marker(self, item: Any) -> None:
        """Enqueue a control item for the listener, bypassing the bound and the counters.

        Always wakes the listener, even mid-linger: a flush should not wait for the next
        batch boundary.
        """
        self._q.put(item)
        self.idle = False
        if self.wake is not None:
            self.wake()

    def _notify_space(self) -> None:
        if self._blocked:
            with self._space:
                self._space.notify_all()

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
                item = get()
                if item.__class__ is tuple:
                    append(unpack(item))
                else:
                    append(self._take(item))
        except queue.Empty:  # forward() on another thread took the rest
            pass
        if self._blocked:
            with self._space:
                self._space.notify_all()
        return items

    def discard_all(self, markers: list[Any] | None = None) -> int:
        """Take everything queued without counting it; return how many records it was.

        The caller accounts for them (the listener counts them lost to its deadline, per
        sink). Control items (flush barriers) are not counted: they go to ``markers``.
        """
        n = 0
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if item.__class__ is _Sized:
                self._release(item.extra)
                n += 1
            elif item.__class__ is tuple or isinstance(item, logging.LogRecord):
                n += 1
            elif markers is not None:
                markers.append(item)
        self._notify_space()
        return n

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's records, counters and waiters."""
        self._q = queue.SimpleQueue()
        self._enqueued = _Counter()
        self._dropped = _Counter()
        self._high_water = 0
        self._extra = 0
        self._extra_lock = threading.Lock()
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
        return self._full(0)

    def put_nowait(self, item: Any) -> None:
        """Stdlib protocol: enqueue per the overflow policy; raise ``queue.Full`` on a drop."""
        if not self.offer(item):
            raise queue.Full

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Stdlib protocol; the overflow policy decides, ``block``/``timeout`` are ignored."""
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        """Stdlib protocol: take one item or raise ``queue.Empty``."""
        item = self._take(self._q.get_nowait())
        self._notify_space()
        return item

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Stdlib protocol: take one item, waiting if asked (for stdlib listeners)."""
        item = self._take(self._q.get(block, timeout))
        self._notify_space()
        return item

    def task_done(self) -> None:
        """Stdlib protocol; nothing to do."""
