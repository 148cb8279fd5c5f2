"""QueueHandler: the emit path copies, freezes, captures context and never raises."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import linecache
import logging
import queue
import sys
import threading
from typing import Any

import pytest

import aiolog
from aiolog import QueueHandler, RecordQueue
from aiolog._executor import INTERNAL_THREADS
from tests.helpers import run

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class ListHandler(logging.Handler):
    """Collects the records it is given, as a second handler on the same logger."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logger() -> logging.Logger:
    log = logging.getLogger("test.handler")
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


def queued(handler: QueueHandler) -> list[logging.LogRecord]:
    q = handler.queue
    assert isinstance(q, RecordQueue)
    return q.drain(10_000)


def test_stdlib_constructor_shape(logger: logging.Logger) -> None:
    """QueueHandler(queue) works like the stdlib class; without one it makes a RecordQueue."""
    q: queue.Queue[Any] = queue.Queue()
    assert q is QueueHandler(q).queue
    own = QueueHandler()
    assert isinstance(own.queue, RecordQueue)
    assert 200_000 == own.queue.maxsize


def test_other_handlers_see_the_record_unmodified(logger: logging.Logger) -> None:
    """The queued record is a copy; the original keeps its msg, args and attributes."""
    qh = QueueHandler()
    other = ListHandler()
    logger.addHandler(qh)
    logger.addHandler(other)
    logger.info("items %s", [1, 2])
    (original,) = other.records
    assert "items %s" == original.msg
    assert ([1, 2],) == original.args
    assert not hasattr(original, "aiolog_context")
    (copy,) = queued(qh)
    assert copy is not original


def test_deferred_records_are_not_copied_on_the_callers_thread(logger: logging.Logger) -> None:
    """With immutable args the handler queues the record and its capture, not a copy: the
    listener's copy is made when the queue is drained. Other handlers see the original
    untouched, and what they do to it afterwards does not reach the drained copy."""
    qh = QueueHandler()
    other = ListHandler()
    logger.addHandler(qh)
    logger.addHandler(other)

    async def main() -> None:
        logger.info("n=%d", 1)

    run(main)
    (original,) = other.records
    assert not {"aiolog_context", "aiolog_coro", "aiolog_callback"} & set(original.__dict__)
    if sys.version_info < (3, 12):
        assert "taskName" not in original.__dict__
    assert isinstance(qh.queue, RecordQueue)
    packed = qh.queue._q.get_nowait()
    assert original is packed[0]  # no copy was made on the caller's thread
    qh.queue._q.put(packed)
    (copy,) = queued(qh)
    assert copy is not original
    assert copy.aiolog_coro.endswith("<locals>.main")
    original.msg = "changed later by another handler"
    original.message = "formatted by another handler"
    assert "n=%d" == copy.msg
    assert "message" not in copy.__dict__


def test_a_record_nothing_else_holds_becomes_the_listeners_without_a_copy(
    logger: logging.Logger,
) -> None:
    """Once the logger call returned and no other handler kept it, the drained record is
    the one the factory made (no copy); one another handler kept is copied instead, and
    that handler's record stays as it was."""
    logging.setLogRecordFactory(aiolog.FastLogRecord)
    try:
        qh = QueueHandler()
        logger.addHandler(qh)
        logger.info("alone %d", 1)
        assert isinstance(qh.queue, RecordQueue)
        packed = qh.queue._q.get_nowait()
        made = id(packed[0])  # not a reference: that would make it shared
        qh.queue._q.put(packed)
        del packed
        (taken,) = queued(qh)
        assert made == id(taken)  # the same object (alive all along, so the id is its own)
        assert isinstance(taken, aiolog.FastLogRecord)
        assert () == taken.aiolog_extras  # no extra= fields: the formatters need not look
        other = ListHandler()
        logger.addHandler(other)
        logger.info("shared %d", 2, extra={"user": "ann"})
        (copy,) = queued(qh)
        (original,) = other.records
        assert copy is not original
        assert copy.aiolog_extras is None  # extras: the formatters look them up
        assert "aiolog_coro" not in original.__dict__
    finally:
        logging.setLogRecordFactory(logging.LogRecord)


def test_a_makelogrecord_copy_keeps_the_context() -> None:
    """A record rebuilt from another's ``__dict__`` (structlog's ProcessorFormatter does)
    reads the context from its dict even where the factory's class keeps it in a slot."""
    logging.setLogRecordFactory(aiolog.FastLogRecord)
    try:
        context = contextvars.copy_context()
        copy = logging.makeLogRecord({"msg": "x", "aiolog_context": context})
    finally:
        logging.setLogRecordFactory(logging.LogRecord)
    assert isinstance(copy, aiolog.FastLogRecord)
    assert context is copy.aiolog_context


def test_the_listeners_copy_keeps_the_context_out_of_its_dict(logger: logging.Logger) -> None:
    """aiolog_context reads as an attribute but lives in a slot: the copy's ``__dict__``
    then holds plain data only and the garbage collector stops tracking it, which makes
    collections cheaper while thousands of records wait in a sink buffer."""
    qh = QueueHandler()
    logger.addHandler(qh)
    token = request_id.set("r-1")
    try:
        logger.info("n=%d", 1)
    finally:
        request_id.reset(token)
    (copy,) = queued(qh)
    assert "r-1" == copy.aiolog_context[request_id]
    assert "aiolog_context" not in copy.__dict__
    gc.collect()
    assert not gc.is_tracked(copy.__dict__)


def test_a_frozen_record_from_a_loop_callback_names_the_callback(
    logger: logging.Logger,
) -> None:
    """The copying path (a mutable argument) captures what the packed path does."""
    qh = QueueHandler()
    logger.addHandler(qh)

    def tick() -> None:
        logger.info("items %s", [1, 2])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.call_soon(tick)
        loop.call_soon(done.set_result, None)  # callbacks run in order: tick has run
        await done

    run(main)
    (record,) = queued(qh)
    assert "items [1, 2]" == record.msg
    assert record.args is None
    assert record.aiolog_callback.endswith("<locals>.tick")
    assert record.aiolog_coro is None


def test_a_subclass_that_overrides_prepare_gets_the_stdlib_order(
    logger: logging.Logger,
) -> None:
    """A subclass's own prepare() (or emit/enqueue) is called as in the stdlib class."""

    class Tagging(QueueHandler):
        def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
            prepared = super().prepare(record)
            prepared.tag = "mine"
            return prepared

    qh = Tagging()
    logger.addHandler(qh)
    logger.info("n=%d", 1)
    (record,) = queued(qh)
    assert "mine" == record.tag


def test_immutable_args_are_deferred(logger: logging.Logger) -> None:
    """msg % args waits for the listener when every argument is an immutable scalar."""
    qh = QueueHandler()
    logger.addHandler(qh)
    logger.info("user %s id %d ratio %.1f", "ann", 7, 0.5)
    (record,) = queued(qh)
    assert "user %s id %d ratio %.1f" == record.msg
    assert ("ann", 7, 0.5) == record.args
    assert "user ann id 7 ratio 0.5" == record.getMessage()


def test_mutable_args_are_frozen_at_emit(logger: logging.Logger) -> None:
    """A list argument changed after logging does not change the logged message."""
    qh = QueueHandler()
    logger.addHandler(qh)
    items = [1, 2]
    logger.info("items %s", items)
    logger.info("map %(a)s", {"a": items})
    items.append(3)
    first, second = queued(qh)
    assert "items [1, 2]" == first.getMessage()
    assert first.args is None
    assert "map [1, 2]" == second.getMessage()


def test_non_str_msg_is_frozen(logger: logging.Logger) -> None:
    """A non-str msg (a dict) is rendered at emit time."""
    qh = QueueHandler()
    logger.addHandler(qh)
    payload = {"k": 1}
    logger.info(payload)
    payload["k"] = 2
    (record,) = queued(qh)
    assert "{'k': 1}" == record.msg


def test_wrong_arg_count_never_raises(logger: logging.Logger) -> None:
    """A format/argument mismatch yields a readable message, no exception."""
    qh = QueueHandler()
    logger.addHandler(qh)
    logger.info("%s and %s", [1])
    (record,) = queued(qh)
    assert record.msg.startswith("%s and %s [aiolog: could not format message: TypeError")


def test_traceback_is_not_rendered_on_the_caller(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No linecache I/O and no exc_text on the emit path: the listener renders it."""
    qh = QueueHandler()
    logger.addHandler(qh)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("linecache used on the emit path")

    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        monkeypatch.setattr(linecache, "getline", forbidden)
        monkeypatch.setattr(linecache, "checkcache", forbidden)
        monkeypatch.setattr(linecache, "updatecache", forbidden)
        logger.exception("failed")
    monkeypatch.undo()
    (record,) = queued(qh)
    assert record.exc_info is not None
    assert ZeroDivisionError is record.exc_info[0]
    assert record.exc_text is None


def test_task_context_is_captured(logger: logging.Logger) -> None:
    """Inside a task: taskName, the coroutine's qualname and the contextvars snapshot."""
    qh = QueueHandler()
    logger.addHandler(qh)

    async def fetch() -> None:
        request_id.set("r-42")
        logger.info("in task")
        request_id.set("changed later")

    async def main() -> None:
        await asyncio.create_task(fetch(), name="fetch-42")

    run(main)
    (record,) = queued(qh)
    assert "fetch-42" == record.taskName
    assert "test_task_context_is_captured.<locals>.fetch" == record.aiolog_coro
    assert "r-42" == record.aiolog_context[request_id]


def test_no_task_outside_a_loop(logger: logging.Logger) -> None:
    """Outside any task, taskName is None on every Python (backfilled on 3.10/3.11)."""
    qh = QueueHandler()
    logger.addHandler(qh)
    logger.info("plain")
    (record,) = queued(qh)
    assert record.taskName is None
    assert record.aiolog_coro is None
    assert record.aiolog_callback is None


def test_emit_never_raises(logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing queue goes to handleError; the caller sees no exception."""

    class Broken:
        def put_nowait(self, item: object) -> None:
            raise RuntimeError("queue on fire")

    qh = QueueHandler(Broken())
    errors: list[logging.LogRecord] = []
    monkeypatch.setattr(qh, "handleError", errors.append)
    logger.addHandler(qh)
    logger.info("x")
    assert 1 == len(errors)


def test_foreign_queue_refusals_are_counted(logger: logging.Logger) -> None:
    """A bounded stdlib queue that refuses a record counts it as dropped."""
    q: queue.Queue[Any] = queue.Queue(maxsize=2)
    qh = QueueHandler(q)
    logger.addHandler(qh)
    for i in range(5):
        logger.info("n=%d", i)
    assert 2 == q.qsize()
    assert 3 == qh.dropped


def test_records_from_internal_threads_are_not_queued(logger: logging.Logger) -> None:
    """A record logged on an aiolog thread is counted, not fed back into the queue."""
    qh = QueueHandler()
    logger.addHandler(qh)

    def internal() -> None:
        ident = threading.get_ident()
        INTERNAL_THREADS.add(ident)
        try:
            logger.info("from a sink")
        finally:
            INTERNAL_THREADS.discard(ident)

    t = threading.Thread(target=internal)
    t.start()
    t.join()
    assert [] == queued(qh)
    assert 1 == qh.internal_dropped


def test_overflow_is_counted_through_the_handler(logger: logging.Logger) -> None:
    """The handler's queue bound and policy apply, with exact counts."""
    qh = QueueHandler(maxsize=10, overflow="drop_oldest")
    logger.addHandler(qh)
    for i in range(25):
        logger.info("n=%d", i)
    records = queued(qh)
    assert [f"n={i}" for i in range(15, 25)] == [r.getMessage() for r in records]
    assert 15 == qh.dropped


@pytest.mark.parametrize(
    "msg",
    [
        "lone surrogate \ud800 here",
        "x" * (4 * 1024 * 1024),
    ],
    ids=["surrogate", "4MB"],
)
def test_odd_messages_pass_through(logger: logging.Logger, msg: str) -> None:
    """Lone surrogates and multi-MB messages are queued as they are."""
    qh = QueueHandler()
    logger.addHandler(qh)
    logger.info(msg)
    (record,) = queued(qh)
    assert msg == record.getMessage()


def test_broken_repr_argument_does_not_raise(logger: logging.Logger) -> None:
    """An argument whose __str__ and __repr__ raise still produces a record."""

    class Nasty:
        def __str__(self) -> str:
            raise ValueError("no str")

        def __repr__(self) -> str:
            raise ValueError("no repr")

    qh = QueueHandler()
    logger.addHandler(qh)
    logger.info("obj %s", Nasty())
    (record,) = queued(qh)
    assert "could not format message" in record.msg
    assert "unrepresentable" in record.msg


def test_filters_still_apply(logger: logging.Logger) -> None:
    """Handler filters run before anything is queued."""
    qh = QueueHandler()
    qh.addFilter(lambda r: "secret" not in r.getMessage())
    logger.addHandler(qh)
    logger.info("public")
    logger.info("secret")
    assert ["public"] == [r.getMessage() for r in queued(qh)]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="filters return records on 3.12+")
def test_filter_may_replace_the_record(logger: logging.Logger) -> None:
    """On 3.12+, a filter returning a new record has that record queued."""
    qh = QueueHandler()

    def redact(record: logging.LogRecord) -> logging.LogRecord:
        clone = logging.makeLogRecord(record.__dict__)
        clone.msg = "[redacted]"
        clone.args = None
        return clone

    qh.addFilter(redact)
    logger.addHandler(qh)
    logger.info("password=%s", "hunter2")
    assert ["[redacted]"] == [r.getMessage() for r in queued(qh)]


def test_emit_makes_no_blocking_call_on_the_loop(logger: logging.Logger, blockbuster: Any) -> None:
    """blockbuster finds no blocking call in emit on a running loop."""
    qh = QueueHandler()
    logger.addHandler(qh)

    async def main() -> None:
        for i in range(100):
            logger.info("n=%d", i)
        try:
            raise KeyError("k")
        except KeyError:
            logger.exception("with traceback")

    asyncio.run(main())
    assert 101 == len(queued(qh))
