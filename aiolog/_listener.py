"""The listener: one daemon thread, one asyncio loop, one task per sink.

::

    RecordQueue ──drain (batches)──► pump ──prepare once──► SinkRunner(buffer) ──► sink.write
                                                        └─► SinkRunner(buffer) ──► sink.write

The pump drains the queue in batches, renders each record's message and traceback once
(:meth:`QueueListener.prepare`), and fans the record out to one bounded buffer per sink.
Each sink's runner writes its buffer in batches, so a sink that stalls fills only its own
buffer and drops (counted) while the others go on. Flush barriers travel through the
queue and the buffers like records, so :meth:`QueueListener.flush` returns exactly when
everything logged before it has been written.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import logging
import logging.handlers
import math
import os
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from aiolog._executor import INTERNAL_THREADS
from aiolog._queue import RecordQueue
from aiolog._record import get_message
from aiolog.sinks._adapter import HandlerSink
from aiolog.sinks._base import Sink

__all__ = ["QueueListener"]

_AnySink = Sink | HandlerSink

#: Every listener that was started and not collected: for the exit drain and for fork.
_LISTENERS: weakref.WeakSet[QueueListener] = weakref.WeakSet()

_notice_logger = "aiolog"


def _resolve_none(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolve(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(True)


class _Barrier:
    """Counts sinks that have written everything queued before it; then wakes waiters."""

    __slots__ = ("_callbacks", "_event", "_lock", "_pending")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._pending = 0
        self._callbacks: list[Callable[[], None]] = []

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
        return self._event.wait(timeout)


class _SinkRunner:
    """One sink's bounded buffer and the task that writes it."""

    def __init__(self, handler: logging.Handler, listener: QueueListener) -> None:
        self.handler = handler
        self.sink: _AnySink = handler if isinstance(handler, Sink) else HandlerSink(handler)
        self.name = self.sink.display_name
        self.maxsize = listener.buffer_size
        self.max_bytes = listener.buffer_bytes
        #: Estimated size of the buffered records: rendered message and traceback + 256.
        self.bytes = 0
        self.max_batch = listener.max_batch
        self.check_level = listener.respect_handler_level
        self.buffer: collections.deque[Any] = collections.deque()
        #: The estimated size of each item in :attr:`buffer` (0 for barriers).
        self.sizes: collections.deque[int] = collections.deque()
        self.written = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str | None = None
        self.inflight = 0
        self.closing = False
        self.event: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None

    def stats(self) -> dict[str, Any]:
        errors = self.errors
        last_error = self.last_error
        own: dict[str, Any] = {}
        if isinstance(self.sink, HandlerSink):
            errors += self.sink.errors
            last_error = self.sink.last_error or last_error
        else:
            own = dict(self.sink.sink_stats())
            errors += own.pop("errors", 0)
            last_error = own.pop("last_error", None) or last_error
        return {
            "written": self.written,
            "dropped": self.dropped,
            "errors": errors,
            "buffered": len(self.buffer) + self.inflight,
            "buffered_bytes": self.bytes,
            "last_error": last_error,
            **own,
        }

    def offer(self, records: list[logging.LogRecord], sizes: list[int]) -> None:
        """Buffer what this sink takes of ``records`` (``sizes``: their estimated sizes).

        The level (when asked) and the filters of an aiolog sink are applied here; a
        plain handler's filters run on its worker thread, with its own copy. Beyond
        either bound a record is dropped and counted. A filter that raises drops (and
        counts) that record only.
        """
        handler = self.handler
        level = handler.level if self.check_level else 0
        filtered = isinstance(self.sink, Sink) and bool(handler.filters)
        buffer, buffered_sizes = self.buffer, self.sizes
        maxsize, max_bytes = self.maxsize, self.max_bytes
        nbytes = self.bytes
        added = False
        for record, size in zip(records, sizes, strict=True):
            if record.levelno < level:
                continue
            if filtered:
                try:
                    if not handler.filter(record):
                        continue
                except Exception as exc:
                    self.errors += 1
                    self.dropped += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    continue
            if len(buffer) >= maxsize or (nbytes + size > max_bytes and nbytes):
                self.dropped += 1
                continue
            nbytes += size
            buffer.append(record)
            buffered_sizes.append(size)
            added = True
        self.bytes = nbytes
        if added:
            assert self.event is not None
            self.event.set()

    def put_barrier(self, barrier: _Barrier) -> None:
        self.buffer.append(barrier)
        self.sizes.append(0)
        assert self.event is not None
        self.event.set()

    async def run(self) -> None:
        event = self.event
        assert event is not None
        buffer, sizes = self.buffer, self.sizes
        while True:
            await event.wait()
            event.clear()
            while buffer:
                batch: list[logging.LogRecord] = []
                while buffer and len(batch) < self.max_batch:
                    item = buffer.popleft()
                    size = sizes.popleft()
                    if type(item) is _Barrier:
                        if batch:
                            await self._write(batch)
                            batch = []
                        item.arrive()
                    else:
                        self.bytes -= size
                        batch.append(item)
                if batch:
                    await self._write(batch)
            if self.closing:
                return

    async def _write(self, batch: list[logging.LogRecord]) -> None:
        self.inflight = len(batch)
        try:
            failed = await self.sink.write(batch)
        except asyncio.CancelledError:  # the stop deadline passed mid-write
            self.dropped += len(batch)
            raise
        except Exception as exc:
            self.errors += 1
            self.dropped += len(batch)
            self.last_error = f"{type(exc).__name__}: {exc}"
        else:
            n_failed = failed if isinstance(failed, int) else 0
            self.written += len(batch) - n_failed
            self.dropped += n_failed
        finally:
            self.inflight = 0

    def abandon(self) -> None:
        """Count what is left in the buffer (the stop deadline passed)."""
        lost = sum(1 for item in self.buffer if type(item) is not _Barrier)
        for item in self.buffer:
            if type(item) is _Barrier:
                item.arrive()
        self.buffer.clear()
        self.sizes.clear()
        self.bytes = 0
        self.dropped += lost


class QueueListener(logging.handlers.QueueListener):
    """A :class:`logging.handlers.QueueListener` that runs its sinks on an asyncio loop.

    ``QueueListener(queue, *handlers, respect_handler_level=False)`` is the stdlib
    signature; the keyword-only options tune batching:

    :param max_batch: most records taken from the queue, or written to a sink, at once.
    :param linger: seconds the listener waits after a batch to let the next one grow,
        so a busy application wakes it about ``1/linger`` times a second, not per record.
        It is also the longest the listener holds the interpreter lock for one batch at
        a steady rate, hence the loop lag it can cause: the default 2 ms keeps that
        under the lag an application's own logging causes (see docs/benchmarks.md).
    :param idle_after: seconds without records after which the listener stops polling
        and sleeps until a producer wakes it. Waking costs the producer a system call,
        so a listener that polls on for a while spares applications that log every few
        milliseconds one per record.
    :param buffer_size: each sink's bound in records: beyond it, records are dropped and
        counted.
    :param buffer_bytes: each sink's bound in (estimated) bytes: the rendered message and
        traceback of each buffered record, plus 256. A record alone in an empty buffer is
        always taken, however large.
    :param report_interval: least seconds between two drop notices.
    :param name: the listener thread's name.

    Handlers may be aiolog sinks (:class:`aiolog.sinks.Sink`) or any
    :class:`logging.Handler`, which then runs on a worker thread of its own. The listener
    thread is a daemon; :meth:`stop` drains with a deadline, and an exit hook stops every
    running listener before ``logging.shutdown`` closes the handlers.
    """

    _thread: threading.Thread | None
    queue: Any  # a RecordQueue, or any object with the stdlib queue methods

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
        report_interval: float = 5.0,
        name: str = "aiolog-listener",
    ) -> None:
        super().__init__(queue, *handlers, respect_handler_level=respect_handler_level)
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch!r}")
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, not {buffer_size!r}")
        self.max_batch = max_batch
        self.linger = linger
        self.idle_after = idle_after
        self.buffer_size = buffer_size
        if buffer_bytes < 1:
            raise ValueError(f"buffer_bytes must be at least 1, not {buffer_bytes!r}")
        self.buffer_bytes = buffer_bytes
        self.report_interval = report_interval
        self.name = name
        self._thread = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._lingering: asyncio.Future[None] | None = None
        self._runners: list[_SinkRunner] = []
        self._stopping = False
        self._deadline = 0.0
        self._clean = True
        self._bad_records = 0
        self._last_error: str | None = None
        self._reported: dict[str, int] = {}
        self._last_report = -math.inf
        self._in_trouble = False
        self._pid = os.getpid()

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

    def stop(self, timeout: float = 5.0) -> bool:  # type: ignore[override]
        """Drain the queue into the sinks, close them, and end the thread.

        Returns True when everything queued was written within ``timeout`` seconds. What
        could not be written by then is counted as dropped and the thread is left to end
        on its own (it is a daemon). Idempotent; safe to call from any thread but the
        listener's own (that returns False at once).
        """
        with self._lock:
            thread = self._thread
            if thread is None:
                return True
            if thread is threading.current_thread():
                return False
            self._deadline = time.monotonic() + timeout
            self._stopping = True
            self._wake()
            thread.join(timeout + 1.0)
            alive = thread.is_alive()
            self._thread = None
            _LISTENERS.discard(self)
            return self._clean and not alive

    def __enter__(self) -> QueueListener:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until every record queued before the call is written; False on timeout."""
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
            return await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            return False

    def _send_barrier(self) -> _Barrier | None:
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return None
        barrier = _Barrier()
        q = self.queue
        if isinstance(q, RecordQueue):
            q.put_marker(barrier)
        else:
            try:
                q.put_nowait(barrier)
            except Exception:
                return None
            self._wake()
        return barrier

    def _wake(self) -> None:
        loop, event = self._loop, self._wakeup
        if loop is None or event is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed in between
            loop.call_soon_threadsafe(self._on_wake, event)

    def _on_wake(self, event: asyncio.Event) -> None:
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

    # -- the listener thread --------------------------------------------------------------

    def _run(self, ready: threading.Event, errors: list[BaseException]) -> None:
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
        loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        try:
            self._runners = [_SinkRunner(h, self) for h in self.handlers]
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
        q = self.queue
        ours = isinstance(q, RecordQueue)
        wakeup = self._wakeup
        assert wakeup is not None
        chunk = max(1, min(self.max_batch, self.buffer_size // 2))
        last_records = time.monotonic()
        while True:
            items = q.drain(self.max_batch) if ours else self._drain_foreign()
            if items:
                last_records = time.monotonic()
                # Hand out in slices no larger than half a sink buffer, letting the sink
                # tasks run in between: a sink that keeps up must not drop just because
                # the pump handed it a whole batch at once.
                for start in range(0, len(items), chunk):
                    if start:
                        await asyncio.sleep(0)
                    self._dispatch(items[start : start + chunk])
                self._maybe_report()
                if len(items) >= self.max_batch:
                    await asyncio.sleep(0)
                elif not self._stopping and self.linger > 0:
                    await self._linger()
                continue
            if self._stopping:
                return
            if self._in_trouble:
                self._maybe_report()
            if self.linger > 0 and time.monotonic() - last_records < self.idle_after:
                await self._linger()  # records may come again soon: poll, sparing wakes
                continue
            wakeup.clear()
            if ours:
                q.idle = True
                if q.qsize():
                    q.idle = False
                    continue
            timeout = None if ours else self.linger * 4
            if self._in_trouble:
                timeout = min(timeout or self.report_interval, self.report_interval)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout)
            if ours:
                q.idle = False

    def _drain_foreign(self) -> list[Any]:
        items = []
        get = self.queue.get_nowait
        for _ in range(self.max_batch):
            try:
                item = get()
            except Exception:
                break
            if item is None:  # the stdlib listener's stop sentinel
                continue
            items.append(item)
        return items

    def _dispatch(self, items: Iterable[Any]) -> None:
        """Prepare each record once and hand them to every sink, barriers in order."""
        runners = self._runners
        prepare = self.prepare
        records: list[logging.LogRecord] = []
        sizes: list[int] = []
        for item in items:
            if type(item) is _Barrier:
                if records:
                    self._offer(records, sizes)
                    records, sizes = [], []
                item.expect(len(runners))
                for runner in runners:
                    runner.put_barrier(item)
                continue
            try:
                record = prepare(item)
                exc_text = record.exc_text
                size = len(record.message) + (len(exc_text) if exc_text else 0) + 256
            except Exception as exc:
                self._bad_records += 1
                self._last_error = f"bad record: {type(exc).__name__}: {exc}"
                continue
            records.append(record)
            sizes.append(size)
        if records:
            self._offer(records, sizes)

    def _offer(self, records: list[logging.LogRecord], sizes: list[int]) -> None:
        for runner in self._runners:
            try:
                runner.offer(records, sizes)
            except Exception as exc:  # a level that is not an int, say: this sink loses them
                runner.errors += 1
                runner.dropped += len(records)
                runner.last_error = f"{type(exc).__name__}: {exc}"

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
        """Let every sink write what it has, until the deadline; then close the sinks."""
        runners = self._runners
        for runner in runners:
            runner.closing = True
            if runner.event is not None:
                runner.event.set()
        tasks = [r.task for r in runners if r.task is not None]
        if tasks:
            remaining = max(0.0, self._deadline - time.monotonic())
            _, pending = await asyncio.wait(tasks, timeout=remaining)
            for task in pending:
                task.cancel()
            if pending:
                self._clean = False
                await asyncio.wait(pending, timeout=0.5)
        q = self.queue
        if isinstance(q, RecordQueue) and q.qsize():
            if q.forward_to is not None:  # retired by a reconfigure: the successor writes it
                q._forward()
            else:
                self._clean = False
                q.discard_all()
        for runner in runners:
            if runner.buffer:
                self._clean = False
                runner.abandon()
        for runner in runners:
            remaining = max(0.1, self._deadline - time.monotonic())
            try:
                await asyncio.wait_for(runner.sink.aclose(), remaining)
            except Exception as exc:
                runner.errors += 1
                runner.last_error = f"close failed: {type(exc).__name__}: {exc}"
            if isinstance(runner.sink, Sink):
                runner.sink.executor.shutdown(wait=False)
        self._maybe_report(final=True)

    # -- notices --------------------------------------------------------------------------

    def _drop_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        q = self.queue
        if isinstance(q, RecordQueue):
            counts["queue"] = q.dropped
        for runner in self._runners:
            counts[runner.name] = runner.dropped
        return counts

    def _maybe_report(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_report < self.report_interval:
            return
        counts = self._drop_counts()
        new = {k: v - self._reported.get(k, 0) for k, v in counts.items()}
        new = {k: v for k, v in new.items() if v > 0}
        if new:
            self._reported = counts
            self._last_report = now
            self._in_trouble = True
            parts = []
            for key, n in new.items():
                if key == "queue":
                    assert isinstance(self.queue, RecordQueue)
                    parts.append(f"queue full ({self.queue.overflow}): {n} dropped")
                else:
                    runner = next(r for r in self._runners if r.name == key)
                    stats = runner.stats()
                    detail = f"; last error: {stats['last_error']}" if stats["last_error"] else ""
                    parts.append(f"sink {key!r}: {n} dropped or failed{detail}")
            self._notice(
                logging.WARNING,
                "aiolog is losing records: " + "; ".join(parts),
                {"aiolog_drops": new},
            )
        elif self._in_trouble and not final:
            self._in_trouble = False
            self._last_report = now
            self._notice(logging.INFO, "aiolog recovered: no records lost since the last notice")

    def _notice(self, level: int, message: str, extra: dict[str, Any] | None = None) -> None:
        record = logging.LogRecord(_notice_logger, level, __file__, 0, message, None, None)
        record.taskName = None
        if extra:
            record.__dict__.update(extra)
        self._dispatch([record])

    # -- stats and fork -------------------------------------------------------------------

    def sink_stats(self) -> dict[str, dict[str, Any]]:
        """Per-sink counters: written, dropped, errors, buffered, last_error.

        Read from another thread, the numbers are a consistent-enough snapshot: each is
        exact, but they are not read at one instant.
        """
        stats: dict[str, dict[str, Any]] = {}
        for runner in self._runners:
            name = runner.name
            if name in stats:
                name = f"{name}#{len(stats)}"
            stats[name] = runner.stats()
        return stats

    def _after_fork_in_child(self) -> None:
        was_running = self._thread is not None
        self._thread = None
        self._loop = None
        self._wakeup = None
        self._lock = threading.Lock()
        self._runners = []
        self._reported = {}
        self._in_trouble = False
        if isinstance(self.queue, RecordQueue):
            self.queue.reset_after_fork()
        for handler in self.handlers:
            if isinstance(handler, Sink):
                handler.after_fork()
        if was_running:
            self.start()


def _after_fork_in_child() -> None:
    INTERNAL_THREADS.clear()
    for listener in list(_LISTENERS):
        try:
            listener._after_fork_in_child()
        except Exception:  # pragma: no cover - never break the child over logging
            traceback.print_exc()


def stop_all(timeout: float = 5.0) -> None:
    """Stop every running listener (the exit drain), newest first."""
    for listener in reversed(list(_LISTENERS)):
        listener.stop(timeout)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(stop_all)


# -- sinks attached directly to a logger ---------------------------------------------------

_direct_lock = threading.Lock()


def direct_handler_for(sink: Sink) -> logging.Handler:
    """The private QueueHandler (with a running listener) a directly attached sink uses."""
    from aiolog._handler import QueueHandler

    handler = sink._direct
    if isinstance(handler, QueueHandler):
        return handler
    with _direct_lock:
        handler = sink._direct
        if isinstance(handler, QueueHandler):
            return handler
        handler = QueueHandler()
        listener = QueueListener(
            handler.queue,
            sink,
            respect_handler_level=False,
            name=f"aiolog-direct:{sink.display_name}",
        )
        listener.start()
        handler.listener = listener
        sink._direct = handler
        return handler


def close_direct(sink: Sink) -> None:
    """Stop the private listener of a directly attached sink, if it has one."""
    handler = sink._direct
    sink._direct = None
    if handler is not None:
        listener = getattr(handler, "listener", None)
        if listener is not None:
            listener.stop()
