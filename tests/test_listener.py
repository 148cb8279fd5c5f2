"""QueueListener: batching, per-sink isolation, flush barriers, stop, failures, fork."""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from aiolog import QueueHandler, QueueListener, RecordQueue
from aiolog.testing import CaptureSink


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("test.listener")
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    log.handlers.clear()


def not_notice(record: logging.LogRecord) -> bool:
    """Keep aiolog's own drop notices out of exact counts."""
    return record.name != "aiolog"


def pair(*sinks: logging.Handler, **kwargs: Any) -> tuple[QueueHandler, QueueListener]:
    handler = QueueHandler(maxsize=kwargs.pop("maxsize", 10_000))
    listener = QueueListener(handler.queue, *sinks, **kwargs)
    handler.listener = listener
    return handler, listener


def test_stdlib_constructor_shape() -> None:
    """QueueListener(queue, *handlers, respect_handler_level=...) like the stdlib."""
    q = RecordQueue()
    sink = CaptureSink()
    listener = QueueListener(q, sink, respect_handler_level=True)
    assert (sink,) == listener.handlers
    assert listener.respect_handler_level is True


def test_records_arrive_in_order_with_rendered_messages(logger: logging.Logger) -> None:
    """Every record reaches the sink, in order, with message and traceback rendered."""
    sink = CaptureSink()
    handler, listener = pair(sink)
    logger.addHandler(handler)
    with listener:
        for i in range(1000):
            logger.info("n=%d", i)
        try:
            raise ValueError("bad")
        except ValueError:
            logger.exception("caught")
        assert listener.flush(5)
    assert [f"n={i}" for i in range(1000)] + ["caught"] == sink.messages
    last = sink.records[-1]
    assert "ValueError: bad" in last.exc_text
    assert "Traceback (most recent call last)" in last.exc_text


def test_start_and_stop_are_idempotent(logger: logging.Logger) -> None:
    """start() twice keeps one thread; stop() twice is harmless; restart works."""
    sink = CaptureSink()
    handler, listener = pair(sink)
    logger.addHandler(handler)
    listener.start()
    thread = listener._thread
    listener.start()
    assert thread is listener._thread
    logger.info("one")
    assert listener.stop()
    assert listener.stop()
    assert thread is not None
    assert not thread.is_alive()
    listener.start()
    logger.info("two")
    assert listener.stop()
    assert ["one", "two"] == sink.messages
    assert 2 == sink.closed_count


def test_listener_thread_is_a_named_daemon(logger: logging.Logger) -> None:
    """The listener runs on a daemon thread called aiolog-listener."""
    _, listener = pair(CaptureSink())
    with listener:
        thread = listener._thread
        assert thread is not None
        assert thread.daemon
        assert "aiolog-listener" == thread.name


def test_flush_is_a_barrier(logger: logging.Logger) -> None:
    """flush() times out while a sink is stalled and succeeds once it writes."""
    sink = CaptureSink()
    handler, listener = pair(sink)
    logger.addHandler(handler)
    with listener:
        sink.hold()
        logger.info("held")
        assert sink.entered.wait(5)
        assert listener.flush(0.05) is False
        sink.release()
        assert listener.flush(5) is True
        assert ["held"] == sink.messages


def test_aflush_does_not_block_the_loop(logger: logging.Logger, blockbuster: Any) -> None:
    """aflush() awaits the barrier while the loop keeps running."""
    sink = CaptureSink()
    handler, listener = pair(sink)
    logger.addHandler(handler)
    listener.start()
    try:

        async def main() -> bool:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            t = asyncio.create_task(ticker())
            for i in range(100):
                logger.info("n=%d", i)
            ok = await listener.aflush(5)
            t.cancel()
            return ok and ticks > 0

        assert asyncio.run(main())
        assert 100 == len(sink.records)
    finally:
        listener.stop()


def test_a_slow_sink_gets_backpressure_not_drops(logger: logging.Logger) -> None:
    """A sink that is slow but writing holds the pump back: records wait in the queue."""
    slow = CaptureSink("slow")
    fast = CaptureSink("fast")
    handler, listener = pair(slow, fast, buffer_size=50, stall_timeout=3600)
    logger.addHandler(handler)
    with listener:
        slow.hold()
        logger.info("first")
        assert slow.entered.wait(5)
        for i in range(500):
            logger.info("n=%d", i)
        assert fast.wait_for(51, 5)
        assert 450 == handler.queue.qsize()  # the rest waits in the queue, in order
        assert listener.flush(0.05) is False  # held back, not lost
        stats = listener.sink_stats()
        assert 0 == stats["slow"]["dropped"]
        assert 51 == stats["slow"]["buffered"]  # 50 in the buffer + 1 being written
        assert 51 == stats["fast"]["offered"]  # the pump waits for the slow sink
        slow.release()
        assert listener.flush(5)
    assert ["first", *(f"n={i}" for i in range(500))] == slow.messages
    assert slow.messages == fast.messages
    assert all(0 == s["dropped"] for s in listener.sink_stats().values())


def test_a_stalled_sink_does_not_delay_the_others(logger: logging.Logger) -> None:
    """After stall_timeout a sink that writes nothing sheds, counted; the others go on."""
    slow = CaptureSink("slow")
    fast = CaptureSink("fast")
    handler, listener = pair(slow, fast, buffer_size=50, stall_timeout=0.05)
    logger.addHandler(handler)
    with listener:
        slow.hold()
        logger.info("first")
        assert slow.entered.wait(5)
        for i in range(500):
            logger.info("n=%d", i)
        assert fast.wait_for(501, 5), (len(fast.records), listener.sink_stats())
        stats = listener.sink_stats()
        assert 0 == stats["fast"]["dropped"]
        assert stats["slow"]["stalled"] is True
        assert 51 == stats["slow"]["buffered"]  # 50 queued + 1 in flight
        assert 450 == stats["slow"]["dropped_stalled"]
        assert "stalled" in stats["slow"]["last_error"]
        slow.release()
        assert listener.flush(5) is False  # records queued before the flush were lost
        stats = listener.sink_stats()
    written = [r for r in slow.records if not_notice(r)]
    assert ["first", *(f"n={i}" for i in range(50))] == [r.message for r in written]
    assert stats["slow"]["stalled"] is False  # it wrote again
    assert 501 == stats["slow"]["offered"]
    assert 501 == stats["slow"]["written"] + stats["slow"]["dropped"]
    notices = [r for r in slow.records if r.name == "aiolog"]
    assert 1 == len(notices)  # said in its own output as soon as it wrote again
    assert {"slow": {"stalled": 450}} == notices[0].aiolog_lost
    assert "this sink: 450 while the sink was stalled" in notices[0].message
    assert slow.records.index(notices[0]) == 1  # right after the write that recovered


def test_a_raising_sink_is_counted_and_the_listener_survives(logger: logging.Logger) -> None:
    """A sink that raises has its batches counted as errors; others and the thread go on."""
    bad = CaptureSink("bad", fail=OSError("disk on fire"))
    good = CaptureSink("good")
    handler, listener = pair(bad, good)
    logger.addHandler(handler)
    with listener:
        for i in range(10):
            logger.info("n=%d", i)
            assert listener.flush(5) is False  # bad lost it
        stats = listener.sink_stats()["bad"]
        assert listener.running
    assert [f"n={i}" for i in range(10)] == [r.message for r in good.records if not_notice(r)]
    assert 10 == stats["dropped"]
    assert 10 == stats["dropped_error"]
    assert 10 <= stats["errors"]  # one per batch, and one per notice it failed to write
    assert 0 == stats["written"]
    assert "OSError: disk on fire" == stats["last_error"]


def test_losses_are_said_in_every_sink(logger: logging.Logger) -> None:
    """A failing sink's losses reach the other sinks' output in one notice per interval."""
    bad = CaptureSink("bad", fail=RuntimeError("nope"))
    good = CaptureSink("good")
    handler, listener = pair(bad, good, report_interval=3600)
    logger.addHandler(handler)
    with listener:
        for _ in range(3):
            logger.info("x")
            assert listener.flush(5) is False
    notices = [r for r in good.records if r.name == "aiolog"]
    assert 2 == len(notices)  # the first loss at once, the rest in a final one at stop
    assert logging.WARNING == notices[0].levelno
    assert "sink 'bad': 1 to errors (last error: RuntimeError: nope)" in notices[0].message
    assert {"bad": {"error": 1}} == notices[0].aiolog_lost
    assert {"bad": {"error": 2}} == notices[1].aiolog_lost
    assert 2 == listener.sink_stats()["good"]["notices"]
    assert 3 == listener.sink_stats()["good"]["written"]  # notices are not records


def test_records_soon_after_others_do_not_wake_the_listener(logger: logging.Logger) -> None:
    """Within idle_after of the last record the listener polls: producers never wake it."""
    sink = CaptureSink()
    handler, listener = pair(sink, linger=0.001, idle_after=3600)
    q = handler.queue
    assert isinstance(q, RecordQueue)
    logger.addHandler(handler)
    with listener:
        logger.info("first")
        assert listener.flush(5)
        wakes: list[bool] = []
        wake = q.wake
        assert wake is not None

        def counting_wake() -> None:
            wakes.append(True)
            wake()

        q.wake = counting_wake
        for i in range(50):
            logger.info("more %d", i)
        assert not wakes  # the listener never said it was idle
        assert listener.flush(5)  # the flush marker wakes it, as always
    assert ["first", *(f"more {i}" for i in range(50))] == sink.messages
    assert [True] == wakes


def test_plain_handlers_run_as_sinks(logger: logging.Logger) -> None:
    """A stdlib StreamHandler works behind the listener, with its own formatter."""
    stream = io.StringIO()
    plain = logging.StreamHandler(stream)
    plain.setFormatter(logging.Formatter("%(levelname)s:%(message)s"))
    handler, listener = pair(plain)
    logger.addHandler(handler)
    with listener:
        logger.warning("hello %s", "world")
        assert listener.flush(5)
        assert "WARNING:hello world\n" == stream.getvalue()


def test_plain_handlers_see_the_captured_context(logger: logging.Logger) -> None:
    """A plain handler behind the listener reads aiolog_context like any attribute."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")
    seen: list[Any] = []

    class Reading(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.aiolog_context[var])

    handler, listener = pair(Reading())
    logger.addHandler(handler)
    with listener:
        contextvars.copy_context().run(lambda: (var.set("acme"), logger.info("x")))
        assert listener.flush(5)
    assert ["acme"] == seen


def test_plain_handler_errors_are_counted_not_printed(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain handler failing in emit is counted with last_error, no traceback spam."""

    class Failing(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                raise ConnectionError("peer gone")
            except Exception:
                self.handleError(record)

    failing = Failing()
    failing.name = "failing"
    failing.addFilter(not_notice)
    handler, listener = pair(failing)
    logger.addHandler(handler)
    with listener:
        for _ in range(5):
            logger.info("x")
        assert listener.flush(5) is False
        stats = listener.sink_stats()["failing"]
    assert 5 == stats["errors"]
    assert 5 == stats["dropped"]
    assert "ConnectionError: peer gone" == stats["last_error"]
    assert "Traceback" not in capsys.readouterr().err
    assert "handleError" not in failing.__dict__  # given back on stop


def test_handler_levels_respected_when_asked(logger: logging.Logger) -> None:
    """respect_handler_level=True filters per sink level, like the stdlib listener."""
    errors_only = CaptureSink("errors", level=logging.ERROR)
    everything = CaptureSink("all")
    handler, listener = pair(errors_only, everything, respect_handler_level=True)
    logger.addHandler(handler)
    with listener:
        logger.info("info")
        logger.error("error")
        assert listener.flush(5)
    assert ["error"] == errors_only.messages
    assert ["info", "error"] == everything.messages


def test_a_bad_record_does_not_kill_the_listener(logger: logging.Logger) -> None:
    """Records with broken messages or exc_info are written with placeholders."""
    sink = CaptureSink()
    handler, listener = pair(sink)
    with listener:
        broken = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("many",), None)
        weird_exc = logging.LogRecord("x", logging.ERROR, __file__, 1, "exc", None, None)
        weird_exc.exc_info = ("not", "an", "exc_info")  # type: ignore[assignment]
        handler.queue.put_nowait(broken)
        handler.queue.put_nowait(weird_exc)
        logger.addHandler(handler)
        logger.info("after")
        assert listener.flush(5)
        assert listener.running
    assert 3 == len(sink.records)
    assert sink.messages[0].startswith("%d items [aiolog: could not format message")
    assert sink.records[1].exc_text.startswith("<traceback could not be rendered")
    assert "after" == sink.messages[2]


def test_a_sink_that_logs_does_not_loop(logger: logging.Logger) -> None:
    """Records logged by a sink from the listener thread are counted, not re-queued."""

    class Chatty(CaptureSink):
        async def write(self, records: Any) -> None:
            logger.warning("sink is writing %d records", len(records))
            await super().write(records)

    sink = Chatty()
    handler, listener = pair(sink)
    logger.addHandler(handler)
    with listener:
        logger.info("app")
        assert listener.flush(5)
        logger.info("app 2")
        assert listener.flush(5)
    assert ["app", "app 2"] == sink.messages
    assert 2 == handler.internal_dropped


def test_stop_returns_within_its_timeout_when_a_sink_hangs(logger: logging.Logger) -> None:
    """stop(timeout) gives up on a hung sink, counts what is lost, and returns False."""
    sink = CaptureSink()
    sink.addFilter(not_notice)
    handler, listener = pair(sink)
    logger.addHandler(handler)
    listener.start()
    sink.hold()
    logger.info("stuck")
    assert sink.entered.wait(5)
    logger.info("queued behind it")
    assert listener.flush(0.05) is False
    done = threading.Event()
    result: list[bool] = []

    def stopper() -> None:
        result.append(listener.stop(timeout=0.2))
        done.set()

    threading.Thread(target=stopper).start()
    assert done.wait(5), "stop() did not return"
    sink.release()
    assert [False] == result
    assert 2 == listener.sink_stats()["capture"]["dropped"]


def test_stop_drains_everything_queued(logger: logging.Logger) -> None:
    """Records queued before stop() are all written before it returns."""
    sink = CaptureSink()
    handler, listener = pair(sink)
    logger.addHandler(handler)
    listener.start()
    for i in range(5000):
        logger.info("n=%d", i)
    assert listener.stop(5)
    assert 5000 == len(sink.records)


def test_foreign_queue_is_polled(logger: logging.Logger) -> None:
    """A listener on a plain queue.Queue delivers too (by polling)."""
    import queue

    q: queue.Queue[Any] = queue.Queue()
    sink = CaptureSink()
    handler = QueueHandler(q)
    logger.addHandler(handler)
    with QueueListener(q, sink) as listener:
        logger.info("via stdlib queue")
        assert listener.flush(5)
    assert ["via stdlib queue"] == sink.messages


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_gets_its_own_listener(logger: logging.Logger, tmp_path: Any) -> None:
    """After os.fork() the child's records are delivered by a listener of its own."""
    out = tmp_path / "child.txt"

    class FileCapture(CaptureSink):
        async def write(self, records: Any) -> None:
            await super().write(records)
            with open(out, "a") as f:  # noqa: ASYNC230 - test sink, tiny writes
                f.writelines(f"{os.getpid()} {r.message}\n" for r in records)

    sink = FileCapture()
    handler, listener = pair(sink)
    logger.addHandler(handler)
    with listener:
        logger.info("parent before fork")
        assert listener.flush(5)
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                logger.info("from the child")
                code = 0 if listener.flush(5) and listener._thread is not None else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert 0 == os.waitstatus_to_exitcode(status)
        logger.info("parent after fork")
        assert listener.flush(5)
    lines = out.read_text().splitlines()
    assert f"{os.getpid()} parent before fork" == lines[0]
    assert f"{pid} from the child" in lines
    assert f"{os.getpid()} parent after fork" in lines
    assert 3 == len(lines)


def test_a_sinks_own_counters_are_merged_into_stats(logger: logging.Logger) -> None:
    """sink_stats(): errors and last_error combine with the listener's; other keys show as is."""

    class Retrying(CaptureSink):
        def sink_stats(self) -> dict[str, Any]:
            return {"errors": 2, "last_error": "ConnectionRefusedError: nope", "retries": 7}

    sink = Retrying("net")
    handler, listener = pair(sink)
    logger.addHandler(handler)
    with listener:
        logger.info("x")
        assert listener.flush(5)
        stats = listener.sink_stats()["net"]
    assert 2 == stats["errors"]
    assert "ConnectionRefusedError: nope" == stats["last_error"]
    assert 7 == stats["retries"]
    assert 1 == stats["written"]


def test_sink_buffers_are_bounded_by_bytes_too(logger: logging.Logger) -> None:
    """A held sink's buffer stops taking records at buffer_bytes; the rest waits queued."""
    sink = CaptureSink("slow")
    handler, listener = pair(sink, buffer_bytes=10 * (1000 + 256), stall_timeout=3600)
    logger.addHandler(handler)
    with listener:
        sink.hold()
        logger.info("first")
        assert sink.entered.wait(5)
        for _ in range(50):
            logger.info("x" * 1000)
        assert listener.flush(0.05) is False
        stats = listener.sink_stats()["slow"]
        assert 10 * (1000 + 256) == stats["buffered_bytes"]
        assert 0 == stats["dropped"]
        assert 41 == handler.queue.qsize() + listener.held  # 40 records + the flush, in order
        sink.release()
        assert listener.flush(5)
    assert 51 == len(sink.records)
    assert 0 == listener.sink_stats()["slow"]["buffered_bytes"]


def test_one_huge_record_still_passes_an_empty_buffer(logger: logging.Logger) -> None:
    """A record larger than buffer_bytes is not refused when nothing else is buffered."""
    sink = CaptureSink("big")
    handler, listener = pair(sink, buffer_bytes=100)
    logger.addHandler(handler)
    with listener:
        logger.info("y" * 10_000)
        assert listener.flush(5)
    assert [10_000] == [len(m) for m in sink.messages]


def test_last_error_is_the_latest_whoever_counted_it(logger: logging.Logger) -> None:
    """A listener-side failure after an older sink-side one shows as last_error."""

    class Failed(CaptureSink):
        def sink_stats(self) -> dict[str, Any]:
            return {"errors": 1, "last_error": "OSError: an old failure"}

    def picky(record: logging.LogRecord) -> bool:
        if record.msg == "boom":
            raise ValueError("filter broke")
        return True

    sink = Failed("old")
    sink.addFilter(picky)
    handler, listener = pair(sink)
    logger.addHandler(handler)
    with listener:
        logger.info("fine")
        assert listener.flush(5)
        assert "OSError: an old failure" == listener.sink_stats()["old"]["last_error"]
        logger.info("boom")
        assert listener.flush(5) is False
        stats = listener.sink_stats()["old"]
    assert "filter failed: ValueError: filter broke" == stats["last_error"]
    assert 2 == stats["errors"]
    assert 1 == stats["dropped_error"]
