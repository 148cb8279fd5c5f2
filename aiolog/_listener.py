"""The listener: one daemon thread, one asyncio loop, one task per sink.

::

    RecordQueue ──drain──► pump ──prepare once──► SinkRunner(buffer) ──► sink.write
         ▲                  │                 └─► SinkRunner(buffer) ──► sink.write
         └── backpressure ──┘  (takes only as many records as every buffer has room for)

The pump drains the queue in batches, renders each record's message and traceback once
(:meth:`QueueListener.prepare`), and fans the record out to one bounded buffer per sink.
Each sink's runner writes its buffer in batches.

Nothing is dropped for a sink that makes progress: the pump takes from the queue only as
many records as every buffer has room for, so when a sink is slower than the application
the records wait in the queue, in order (backpressure), and the queue's overflow policy is
the only place a burst can lose records. A sink that has finished no write for
``stall_timeout`` seconds while its buffer is full is *stalled*: it no longer holds the
pump back, and sheds (drops, counted) what does not fit in its buffer. It takes records
again as its writes succeed again, and holds the pump back again once it has caught up
(written all it holds). So a dead sink costs the others one ``stall_timeout`` pause, and
a sink that only trickles cannot pace them.

Every record offered to a sink ends up counted once, as written, filtered or dropped (by
cause: stalled, error, deadline). A sink that lost records gets a notice record in its own
output when it next writes (at most every ``report_interval`` seconds, and once more before
it is closed). Flush barriers travel through the queue and the buffers like records, so
:meth:`QueueListener.flush` returns exactly when everything logged before it was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import logging.handlers
import math
import os
import queue
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from aiolog import _options
from aiolog._executor import INTERNAL_THREADS
from aiolog._queue import RecordQueue
from aiolog._record import get_message
from aiolog._runner import Barrier, SinkRunner, adapt

__all__ = ["DEFAULT_STALL_TIMEOUT", "QueueListener", "listeners", "stop_all"]

#: Seconds without a finished write, buffer full, before a sink counts as stalled.
DEFAULT_STALL_TIMEOUT = 2.0

#: Every listener that was started and not collected: for the exit drain and for fork.
_LISTENERS: weakref.WeakSet[QueueListener] = weakref.WeakSet()

#: Called after a listener starts (the exit module arms multiprocessing's exit hook).
START_HOOKS: list[Callable[[], None]] = []

_notice_logger = "aiolog"

#: Longest a final notice may take once the stop deadline has passed, in seconds.
_FINAL_NOTICE_GRACE = 0.5

_monotonic = time.monotonic


class FlushMark:
    """What :meth:`QueueListener.flush` puts on a queue that is not aiolog's own.

    Plain data, so that a ``multiprocessing.Queue`` can carry it: the listener that put
    it recognises it by its process and the barrier's number, and ignores others'.
    """

    __slots__ = ("barrier", "pid")

    def __init__(self, barrier: int, pid: int) -> None:
        self.barrier = barrier
        self.pid = pid

    def __reduce__(self) -> tuple[type[FlushMark], tuple[int, int]]:
        return (FlushMark, (self.barrier, self.pid))


class _QuietOnAiologThreads(logging.Filter):
    """Keep asyncio's chatter about aiolog's own loops out of the application's handlers.

    Each listener thread makes an event loop, and asyncio logs "Using selector: ..." at
    DEBUG for every new loop: on a DEBUG root logger that line would reach the
    application's handlers once per listener. asyncio's records below WARNING that were
    logged on aiolog's threads are dropped; warnings and errors (a callback that raised
    on a listener loop would be an aiolog bug) still go through. The filter is on the
    ``asyncio`` logger while a listener runs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.thread not in INTERNAL_THREADS


_QUIET = _QuietOnAiologThreads()


def _prepared_size(record: logging.LogRecord) -> int:
    """A prepared record's estimated size in a sink's buffer (``buffer_bytes``)."""
    exc_text = record.exc_text
    return len(record.message) + (len(exc_text) if exc_text else 0) + 256


def _resolve_none(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolve(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(True)


class QueueListener(logging.handlers.QueueListener):
    """A :class:`logging.handlers.QueueListener` that runs its sinks on an asyncio loop.

    ``QueueListener(queue, *handlers, respect_handler_level=False)`` is the stdlib
    signature; the keyword-only options tune batching and backpressure:

    :param max_batch: most records taken from the queue, or written to a sink, at once.
    :param linger: seconds the listener waits after a batch to let the next one grow,
        so a busy application wakes it about ``1/linger`` times a second, not per record.
        It is also the longest the listener holds the interpreter lock for one batch at
        a steady rate, hence the loop lag it can cause (see docs/benchmarks.md).
    :param idle_after: seconds without records after which the listener stops polling
        and sleeps until a producer wakes it. Waking costs the producer a system call,
        so a listener that polls on for a while spares applications that log every few
        milliseconds one per record.
    :param buffer_size: each sink's buffer, in records. When a sink's buffer is full the
        listener stops taking records from the queue until the sink makes room.
    :param buffer_bytes: each sink's buffer in (estimated) bytes: the rendered message and
        traceback of each buffered record, plus 256. A record alone in an empty buffer is
        always taken, however large.
    :param stall_timeout: seconds a sink with a full buffer may go without finishing a
        write before it counts as stalled: it then stops holding the others back and
        drops (counted) what does not fit in its buffer, until it has caught up.
    :param report_interval: least seconds between two loss notices in one sink.
    :param name: the listener thread's name.

    Handlers may be aiolog sinks (:class:`aiolog.sinks.Sink`) or any
    :class:`logging.Handler`, which then runs on a worker thread of its own. The listener
    thread is a daemon; :meth:`stop` drains with a deadline, and an exit hook stops every
    running listener before ``logging.shutdown`` closes the handlers.
    """

    _thread: threading.Thread | None
    queue: Any  # a RecordQueue, or any object with the stdlib queue methods

    #: Which of the stdlib's hooks a subclass overrides: the listener then calls them
    #: where the stdlib's would (``dequeue`` per record taken, ``handle`` per record)
    #: instead of its batched paths.
    _custom_dequeue = False
    _custom_handle = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        base = logging.handlers.QueueListener
        cls._custom_dequeue = cls.dequeue is not base.dequeue
        cls._custom_handle = cls.handle is not QueueListener.handle

    def __init__(
        self,
        queue: Any,
        *handlers: logging.Handler,
        respect_handler_level: bool = False,
        max_batch: int = 512,
        linger: float = 0.002,
        idle_after: float = 0.02,
        buffer_size: int = 10_000,
        buffer_bytes: int = 64 * 1024 * 1024,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        report_interval: float = 5.0,
        name: str = "aiolog-listener",
    ) -> None:
        where = "QueueListener()"
        respect_handler_level = _options.boolean(
            where, "respect_handler_level", respect_handler_level
        )
        max_batch = _options.count(where, "max_batch", max_batch)
        linger = _options.duration(where, "linger", linger)
        idle_after = _options.duration(where, "idle_after", idle_after)
        buffer_size = _options.count(where, "buffer_size", buffer_size)
        buffer_bytes = _options.size(where, "buffer_bytes", buffer_bytes)
        stall_timeout = _options.duration(where, "stall_timeout", stall_timeout)
        report_interval = _options.duration(where, "report_interval", report_interval)
        super().__init__(queue, *handlers, respect_handler_level=respect_handler_level)
        self.max_batch = max_batch
        self.linger = linger
        self.idle_after = idle_after
        self.buffer_size = buffer_size
        self.buffer_bytes = buffer_bytes
        self.stall_timeout = float(stall_timeout)
        self.report_interval = report_interval
        self.name = name
        self._thread = None
        # Reentrant: a SIGTERM handler may stop the listener while the thread it
        # interrupted is inside stop() already.
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._lingering: asyncio.Future[None] | None = None
        self._runners: list[SinkRunner] = []
        #: Items taken from the queue that did not fit in the buffers' byte bounds yet.
        self._carry: list[Any] = []
        self._waiting_for_room = False
        self._stopping = False
        self._deadline = 0.0
        self._clean = True
        self._bad_records = 0
        self._last_error: str | None = None
        self._queue_dropped_at_start = 0
        self._pid = os.getpid()
        #: Stop's sentinel, on a queue that is not aiolog's: put, and taken back.
        self._sentinel_sent = False
        self._sentinel_seen = False
        #: Flushes waiting for their mark to come through a queue that is not aiolog's.
        self._flush_marks: dict[int, Barrier] = {}

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the listener thread is alive and not stopping."""
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stopping

    def start(self) -> None:
        """Start the listener thread and its sinks; a no-op when already running.

        Nothing is started during interpreter shutdown (Python forbids new threads then).
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            if sys.is_finalizing():
                return
            self._stopping = False
            self._clean = True
            self._sentinel_sent = self._sentinel_seen = False
            q = self.queue
            self._queue_dropped_at_start = q.dropped if isinstance(q, RecordQueue) else 0
            asyncio_logger = logging.getLogger("asyncio")
            if _QUIET not in asyncio_logger.filters:
                asyncio_logger.addFilter(_QUIET)
            ready = threading.Event()
            errors: list[BaseException] = []
            thread = threading.Thread(
                target=self._run, args=(ready, errors), name=self.name, daemon=True
            )
            thread.start()
            ready.wait()
            if errors:
                thread.join()
                raise errors[0]
            self._thread = thread
            self._pid = os.getpid()
            _LISTENERS.add(self)
        for hook in START_HOOKS:
            hook()

    def stop(self, timeout: float = 5.0) -> bool:  # type: ignore[override]
        """Drain the queue into the sinks, close them, and end the thread.

        Returns True when every record given to the listener since it started was
        written (or filtered out) by every sink, within ``timeout`` seconds: False when
        any was lost, to overflow, a stalled or failing sink, or the deadline. What could
        not be written by the deadline is counted as dropped and the thread is left to
        end on its own (it is a daemon). Idempotent; safe to call from any thread but the
        listener's own (that returns False at once).
        """
        with self._lock:
            thread = self._thread
            if thread is None:
                return True
            if thread is threading.current_thread():
                return False
            self._deadline = _monotonic() + timeout
            self._stopping = True
            if not isinstance(self.queue, RecordQueue):
                # As the stdlib's: the sentinel comes after every record this process
                # put before it (a multiprocessing.Queue's feeder thread may still hold
                # some), and the listener drains until it has seen it.
                try:
                    self.enqueue_sentinel()
                    self._sentinel_sent = True
                except Exception:
                    self._sentinel_sent = False
            self._wake()
            thread.join(timeout + 1.0)
            alive = thread.is_alive()
            self._thread = None
            for barrier in self._flush_marks.values():  # their marks never came back
                barrier.lost = True
                barrier.expect(0)
            self._flush_marks.clear()
            _LISTENERS.discard(self)
            if not any(listener._thread is not None for listener in _LISTENERS):
                logging.getLogger("asyncio").removeFilter(_QUIET)
            return self._clean and not alive and not self.lost()

    def __enter__(self) -> QueueListener:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until every record queued before the call is written.

        Returns True when they all were, within ``timeout`` seconds; False on timeout, and
        also when any record logged before the call was lost since the listener started
        (queue overflow, a stalled or failing sink): "everything so far is written".
        """
        barrier = self._send_barrier()
        if barrier is None:
            return bool(self.queue.qsize() == 0)
        return barrier.wait(timeout)

    async def aflush(self, timeout: float = 5.0) -> bool:
        """:meth:`flush` for coroutines: waits without blocking the caller's loop."""
        barrier = self._send_barrier()
        if barrier is None:
            return bool(self.queue.qsize() == 0)
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(_resolve, done)

        barrier.add_done_callback(wake)
        try:
            await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            return False
        return not barrier.lost

    def _send_barrier(self) -> Barrier | None:
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return None
        # Anything lost already was logged before this call: the answer is False then.
        barrier = Barrier({id(r): r.dropped for r in self._runners}, self.loss_total() > 0)
        q = self.queue
        if isinstance(q, RecordQueue):
            if q.overflow == "drop_oldest":
                dropped = q.dropped

                def evicted() -> None:
                    if q.dropped > dropped:
                        barrier.lost = True

                barrier.add_done_callback(evicted)
            q.put_marker(barrier)
        else:
            # Any queue may cross a process boundary (pickled): the mark that travels
            # is plain data, and stands for the barrier kept here.
            mark = FlushMark(id(barrier), os.getpid())
            self._flush_marks[mark.barrier] = barrier
            try:
                q.put_nowait(mark)
            except Exception:
                del self._flush_marks[mark.barrier]
                return None
            self._wake()
        return barrier

    def _wake(self) -> None:
        """Wake a sleeping pump, from any thread (the queue calls it on its first record)."""
        loop, event = self._loop, self._wakeup
        if loop is None or event is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed in between
            loop.call_soon_threadsafe(self._on_wake, event)

    def _on_wake(self, event: asyncio.Event) -> None:
        """On the listener's loop: set the wake-up event and cut a linger short."""
        event.set()
        linger = self._lingering
        if linger is not None and not linger.done():
            linger.set_result(None)

    async def _linger(self) -> None:
        """Sleep ``linger`` seconds, or less if woken (a flush or stop)."""
        loop = asyncio.get_running_loop()
        future = self._lingering = loop.create_future()
        timer = loop.call_later(self.linger, _resolve_none, future)
        try:
            await future
        finally:
            timer.cancel()
            self._lingering = None

    @property
    def held(self) -> int:
        """Items the pump took from the queue and holds until the buffers have room."""
        return len(self._carry)

    def room_freed(self) -> None:
        """Called by a runner that took records from its buffer: wake a waiting pump."""
        if self._waiting_for_room and self._wakeup is not None:
            self._wakeup.set()

    # -- the listener thread --------------------------------------------------------------

    def _run(self, ready: threading.Event, errors: list[BaseException]) -> None:
        """The listener thread: run :meth:`_main` on a new event loop, then close it.

        The thread is registered in ``INTERNAL_THREADS`` so that what it logs itself (or a
        library it calls does) is not fed back into the queue. A crash, which would be a
        bug in aiolog, is recorded in the stats rather than raised into nowhere.
        """
        ident = threading.get_ident()
        INTERNAL_THREADS.add(ident)
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready, errors))
        except BaseException as exc:  # pragma: no cover - a bug in aiolog itself
            self._clean = False
            self._last_error = f"listener crashed: {type(exc).__name__}: {exc}"
            if not ready.is_set():
                errors.append(exc)
                ready.set()
        finally:
            self._loop = None
            self._wakeup = None
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                INTERNAL_THREADS.discard(ident)

    async def _main(self, ready: threading.Event, errors: list[BaseException]) -> None:
        """Open the sinks and start one runner task per sink, then pump until stopped.

        ``ready`` is set once the sinks are open (or failed to open: the error goes to
        ``errors``, for :meth:`start` to raise on the caller's thread). Runner keys are
        made unique, since stats and notices name sinks by them.
        """
        loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        try:
            self._runners = [SinkRunner(h, self) for h in self.handlers]
            keys: set[str] = set()
            for i, runner in enumerate(self._runners):
                if runner.key in keys or runner.key == "queue":
                    runner.key = f"{runner.key}#{i}"
                keys.add(runner.key)
            for runner in self._runners:
                runner.event = asyncio.Event()
                runner.sink.open()
        except BaseException as exc:
            errors.append(exc)
            ready.set()
            return
        q = self.queue
        if isinstance(q, RecordQueue):
            q.wake = self._wake
        for runner in self._runners:
            runner.task = loop.create_task(runner.run(), name=f"aiolog-sink:{runner.name}")
        ready.set()
        try:
            await self._pump()
        finally:
            await self._finish()

    async def _pump(self) -> None:
        """Move records from the queue to the sinks' buffers, as fast as they make room.

        This is where backpressure happens. The pump takes from the queue only as many
        records as every sink that is not stalled has room for (:meth:`_room`), so a slow
        sink leaves the burst waiting in the queue, in order, instead of having its records
        dropped; when there is no room it waits for a runner to free some, or for the
        stall timeout that lets the others go on without that sink (:meth:`_wait_for_room`).
        What it takes is prepared once and fanned out to every buffer (:meth:`_dispatch`);
        what did not fit by bytes is carried to the next round.

        Between batches it lingers ``linger`` seconds so that the next batch can grow: a
        busy application then wakes it about ``1/linger`` times a second, not per record,
        and the listener's share of the interpreter lock comes in few, short slices. After
        ``idle_after`` seconds without records it stops polling and sleeps until a producer
        wakes it (:meth:`_wake`), which costs that producer a system call. Lost-record
        notices are nudged about every 0.1 s.

        Returns when stopping and the queue is empty (a retired queue forwards what is
        left to its successor first), or when the stop deadline passed: what is still
        held or queued is then counted lost to the deadline in every sink.
        """
        q = self.queue
        ours = isinstance(q, RecordQueue)
        wakeup = self._wakeup
        assert wakeup is not None
        last_records = _monotonic()
        last_check = last_records
        self._carry = []
        while True:
            if self._stopping and _monotonic() >= self._deadline:
                carry, self._carry = self._carry, []
                self._discard(carry)
                self._discard_queue()
                return
            room, room_bytes = self._room()
            if room <= 0:
                await self._wait_for_room()
                continue
            items = self._carry
            if len(items) < room:
                want = room - len(items)
                if ours and not self._custom_dequeue:
                    items += q.drain(want)
                else:
                    items += self._drain_foreign(want)
            now = _monotonic()
            if items:
                last_records = now
                taken = self._dispatch(items, room_bytes)
                self._carry = items[taken:]
                if now - last_check >= 0.1:
                    last_check = now
                    self._nudge_notices()
                if len(items) >= room:
                    await asyncio.sleep(0)
                elif not self._stopping and self.linger > 0:
                    await self._linger()
                continue
            if self._stopping:
                if ours:
                    if q.forward_to is not None:
                        q._forward()  # retired by a reconfigure: the successor writes the rest
                    return
                if not self._sentinel_sent or self._sentinel_seen:
                    return
                await asyncio.sleep(0.001)  # records this process put may still be on the way
                continue
            self._nudge_notices()
            last_check = now
            if self.linger > 0 and now - last_records < self.idle_after:
                await self._linger()  # records may come again soon: poll, sparing wakes
                continue
            wakeup.clear()
            if ours:
                q.idle = True
                if q.qsize():
                    q.idle = False
                    continue
            timeout = None if ours else max(self.linger * 4, 0.001)
            if self._pending_notices():  # wake to write them when the interval allows
                interval = max(self.report_interval, 0.05)
                timeout = interval if timeout is None else min(timeout, interval)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout)
            if ours:
                q.idle = False

    def _room(self) -> tuple[int, float]:
        """What the pump may hand out now: records, and estimated bytes.

        The least room of the buffers of sinks that are not stalled (a stalled sink does
        not hold the others back). A buffer with room takes one more record of any size.
        """
        room = self.max_batch
        room_bytes = math.inf
        for runner in self._runners:
            if not runner.stalled:
                free = runner.room()
                if free < room:
                    room = free
                free_bytes = runner.max_bytes - runner.bytes
                if free_bytes < room_bytes:
                    room_bytes = free_bytes
        return room, room_bytes

    async def _wait_for_room(self) -> None:
        """Wait until a full buffer makes room, or mark the sinks behind it stalled."""
        now = _monotonic()
        full = [r for r in self._runners if not r.stalled and r.room() <= 0]
        if not full and self._room()[0] > 0:
            return
        deadline = min(r.progress_at for r in full) + self.stall_timeout
        if now >= deadline:
            for runner in full:
                if now >= runner.progress_at + self.stall_timeout:
                    runner.stalled = True
                    runner.last_error = (
                        f"stalled: no write finished for {now - runner.progress_at:.1f}s "
                        "with the buffer full; dropping until it writes again"
                    )
            return
        if self._stopping:
            deadline = min(deadline, self._deadline)
        wakeup = self._wakeup
        assert wakeup is not None
        wakeup.clear()
        self._waiting_for_room = True
        try:
            if self._room()[0] <= 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), max(0.0, deadline - now))
        finally:
            self._waiting_for_room = False

    def _drain_foreign(self, limit: int) -> list[Any]:
        """Up to ``limit`` items from a queue that is not a RecordQueue, one by one.

        As the stdlib's listener takes them (``dequeue``, when a subclass overrides it).
        The stop sentinel and flush marks are the listener's own: a sentinel is noted, a
        mark from this process becomes its barrier, one from another is skipped.
        """
        items = []
        get = (
            functools.partial(self.dequeue, False)
            if self._custom_dequeue
            else self.queue.get_nowait
        )
        for _ in range(limit):
            try:
                item = get()
            except Exception:
                break
            if item is None:  # the stop sentinel
                if self._stopping:
                    self._sentinel_seen = True
                continue
            if item.__class__ is FlushMark:
                barrier = (
                    self._flush_marks.pop(item.barrier, None) if item.pid == self._pid else None
                )
                if barrier is None:
                    continue  # another process's, or a forgotten one
                item = barrier
            items.append(item)
        return items

    def _discard_queue(self) -> None:
        """The stop deadline passed: count what is still queued as lost, in every sink."""
        q = self.queue
        if isinstance(q, RecordQueue):
            if q.forward_to is not None:  # retired by a reconfigure: the successor writes it
                q._forward()
                return
            markers: list[Any] = []
            n = q.discard_all(markers)
            self._discard(markers)
        else:
            items = self._drain_foreign(sys.maxsize)
            n = sum(1 for item in items if type(item) is not Barrier)
            self._discard([item for item in items if type(item) is Barrier])
        if n:
            self._clean = False
            for runner in self._runners:
                runner.discard(n)

    def _discard(self, items: list[Any]) -> None:
        """Count ``items`` (taken, never dispatched) lost to the deadline; free flushes."""
        n = 0
        for item in items:
            if type(item) is Barrier:
                item.lost = True
                item.expect(0)
            else:
                n += 1
        if n:
            self._clean = False
            for runner in self._runners:
                runner.discard(n)

    def _dispatch(self, items: list[Any], room_bytes: float = math.inf) -> int:
        """Prepare each record once and hand them to every sink, barriers in order.

        Preparing once (:meth:`prepare`) renders message and traceback a single time for
        all sinks, which then only read the record. A flush barrier splits the batch, so
        that every sink sees it after exactly the records logged before it. A record that
        cannot be prepared is counted as bad and skipped: one bad record never stops the
        listener. Stops before the record that would take the buffers past ``room_bytes``
        (one record always goes): returns how many of ``items`` were handed out.
        """
        if self._custom_handle:
            return self._dispatch_by_handle(items)
        prepare = self.prepare
        records: list[logging.LogRecord] = []
        sizes: list[int] = []
        used = 0
        for index, item in enumerate(items):
            if type(item) is Barrier:
                if records:
                    self._offer(records, sizes)
                    records, sizes = [], []
                self._pass_barrier(item)
                continue
            try:
                record = prepare(item)
                size = _prepared_size(record)
            except Exception as exc:
                self._bad_records += 1
                self._last_error = f"bad record: {type(exc).__name__}: {exc}"
                continue
            used += size
            if used > room_bytes and records:
                self._offer(records, sizes)
                return index
            records.append(record)
            sizes.append(size)
        if records:
            self._offer(records, sizes)
        return len(items)

    def _dispatch_by_handle(self, items: list[Any]) -> int:
        """:meth:`_dispatch` for a subclass that overrides :meth:`handle`: one call each."""
        for item in items:
            if type(item) is Barrier:
                self._pass_barrier(item)
                continue
            try:
                self.handle(item)
            except Exception as exc:
                self._bad_records += 1
                self._last_error = f"handle() failed: {type(exc).__name__}: {exc}"
        return len(items)

    def handle(self, record: logging.LogRecord) -> None:
        """Prepare one record and hand it to every sink's buffer (the stdlib's hook).

        The listener itself prepares and hands out records in batches; it calls this
        per record only when a subclass overrides it (which may call ``super().handle``).
        Which sinks take the record follows ``respect_handler_level``, as the stdlib's.
        """
        record = self.prepare(record)
        self._offer([record], [_prepared_size(record)])

    def _pass_barrier(self, barrier: Barrier) -> None:
        """Put a flush barrier in every buffer, after what they were given before it."""
        barrier.expect(len(self._runners))
        for runner in self._runners:
            runner.put_barrier(barrier)

    def _offer(self, records: list[logging.LogRecord], sizes: list[int]) -> None:
        """Hand the same prepared records to every runner (each filters for its sink)."""
        for runner in self._runners:
            runner.offer(records, sizes)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Render the message and traceback once, into the record, for every sink.

        The record is aiolog's private copy, so this is its last mutation: sinks only read.
        A record whose ``msg % args`` fails keeps a readable message and loses its args.
        """
        try:
            record.message = record.getMessage()
        except Exception:
            record.message = get_message(record)
            record.msg = record.message
            record.args = None
        if record.exc_info and not record.exc_text:
            try:
                record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            except Exception as exc:
                record.exc_text = f"<traceback could not be rendered: {type(exc).__name__}>"
        return record

    async def _finish(self) -> None:
        """Let every sink write what it has, until the deadline; then close the sinks.

        A sink that is still writing at the deadline is cancelled and what it held is
        counted lost to the deadline; every other sink that lost records gets a final
        notice before it is closed.
        """
        runners = self._runners
        for runner in runners:
            runner.closing = True
            if runner.event is not None:
                runner.event.set()
        tasks = [r.task for r in runners if r.task is not None]
        if tasks:
            remaining = max(0.0, self._deadline - _monotonic())
            _, pending = await asyncio.wait(tasks, timeout=remaining)
            for task in pending:
                task.cancel()
            if pending:
                self._clean = False
                await asyncio.wait(pending, timeout=0.5)
        for runner in runners:
            if runner.buffer:
                self._clean = False
                runner.abandon()
        finals = [
            asyncio.ensure_future(runner.write_notice())
            for runner in runners
            if not runner.stuck and runner.notice_due(final=True)
        ]
        if finals:
            grace = max(_FINAL_NOTICE_GRACE, self._deadline - _monotonic())
            _, late = await asyncio.wait(finals, timeout=grace)
            for task in late:
                task.cancel()
        for runner in runners:
            remaining = max(0.1, self._deadline - _monotonic())
            try:
                await asyncio.wait_for(runner.sink.aclose(), remaining)
            except Exception as exc:
                runner.errors += 1
                runner.last_error = f"close failed: {type(exc).__name__}: {exc}"
            runner.sink.release()

    # -- notices and losses ---------------------------------------------------------------

    def queue_dropped(self) -> int:
        """Records the queue dropped (overflow) since this listener started."""
        q = self.queue
        if isinstance(q, RecordQueue):
            return q.dropped - self._queue_dropped_at_start
        return 0

    def queue_policy(self) -> str:
        """The queue's overflow policy, for notices."""
        return str(getattr(self.queue, "overflow", "bounded queue"))

    def _pending_notices(self) -> bool:
        return any(runner.unreported() for runner in self._runners)

    def _nudge_notices(self) -> None:
        """Wake the runners that have a notice due, so they write it even when idle."""
        for runner in self._runners:
            if runner.event is not None and not runner.buffer and runner.notice_due():
                runner.event.set()

    def notice_record(
        self, level: int, message: str, extra: dict[str, Any] | None = None
    ) -> logging.LogRecord:
        """A record of aiolog's own (logger ``aiolog``), prepared like every other."""
        record = logging.LogRecord(_notice_logger, level, __file__, 0, message, None, None)
        record.taskName = None
        record.aiolog_coro = None
        record.aiolog_callback = None
        record.aiolog_context = None
        if extra:
            record.__dict__.update(extra)
        return self.prepare(record)

    def loss_total(self) -> int:
        """Every record lost since the listener started (queue overflow included)."""
        return self.queue_dropped() + sum(runner.dropped for runner in self._runners)

    def loss_table(self) -> dict[str, dict[str, int]]:
        """Records lost since the listener started, by sink and cause (only losses).

        The queue's overflow is under ``"queue"``: its records never reached a sink.
        """
        table: dict[str, dict[str, int]] = {}
        overflow = self.queue_dropped()
        if overflow:
            table["queue"] = {"queue_overflow": overflow}
        for runner in self._runners:
            by_cause = runner.losses()
            if by_cause:
                table[runner.key] = by_cause
        return table

    def lost(self) -> dict[str, dict[str, int]]:
        """:meth:`loss_table`: what was lost since the listener started, by sink and cause."""
        return self.loss_table()

    def runner_named(self, key: str) -> SinkRunner | None:
        """The runner of the sink named ``key`` in stats()."""
        for runner in self._runners:
            if runner.key == key:
                return runner
        return None

    # -- stats and fork -------------------------------------------------------------------

    def sink_stats(self) -> dict[str, dict[str, Any]]:
        """Per-sink counters (see docs/index.md, "Counters").

        Read from another thread, the numbers are a consistent-enough snapshot: each is
        exact, but they are not read at one instant. After :meth:`stop`, ``offered`` is
        exactly ``written + filtered + dropped`` for every sink.
        """
        return {runner.key: runner.stats() for runner in self._runners}

    def writes_to_stderr(self) -> bool:
        """True when one of the sinks writes to the process's standard error."""
        for handler in self.handlers:
            if getattr(handler, "url", None) == "stderr":
                return True
            stream = getattr(handler, "stream", None)
            if stream is not None and stream in (sys.stderr, sys.__stderr__):
                return True
        return False

    def _after_fork_in_child(self) -> None:
        was_running = self._thread is not None
        self._thread = None
        self._loop = None
        self._wakeup = None
        self._lock = threading.RLock()
        self._runners = []
        self._carry = []
        self._waiting_for_room = False
        if isinstance(self.queue, RecordQueue):
            self.queue.reset_after_fork()
        for handler in self.handlers:
            adapt(handler).after_fork()  # a plain handler's adapter is made anew at start
        if was_running and self.owns_queue():
            self.start()
        else:
            _LISTENERS.discard(self)

    def owns_queue(self) -> bool:
        """True when the queue lives in this process only, so a forked child has its own.

        An aiolog queue, a :class:`queue.Queue` or a :class:`queue.SimpleQueue` is copied
        by ``fork()``: the child's listener drains the child's copy. A queue shared
        between processes (a ``multiprocessing.Queue``, a manager's proxy) is the
        parent's listener's to drain: a second listener in each child would take records
        from it and lose them when the child exits.
        """
        return isinstance(self.queue, (RecordQueue, queue.Queue, queue.SimpleQueue))


def listeners() -> list[QueueListener]:
    """The listeners that are running, oldest first."""
    return list(_LISTENERS)


def _after_fork_in_child() -> None:
    INTERNAL_THREADS.clear()
    for listener in list(_LISTENERS):
        try:
            listener._after_fork_in_child()
        except Exception:  # pragma: no cover - never break the child over logging
            traceback.print_exc()


def stop_all(timeout: float = 5.0) -> list[QueueListener]:
    """Stop every running listener, newest first, within ``timeout`` seconds in all.

    Returns the listeners it stopped.
    """
    deadline = _monotonic() + timeout
    stopped = []
    for listener in reversed(list(_LISTENERS)):
        listener.stop(max(0.0, deadline - _monotonic()))
        stopped.append(listener)
    return stopped


os.register_at_fork(after_in_child=_after_fork_in_child)
