"""aiolog's classes in the stdlib's place: the stdlib's own QueueHandler/QueueListener tests.

Each test runs with ``logging.handlers.QueueHandler`` and ``QueueListener`` replaced by
aiolog's (as a program does to upgrade dictConfig files it does not own), and checks what
the stdlib's classes do, often by running the stdlib's beside them.
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
import logging.handlers
import multiprocessing
import os
import pickle
import queue
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aiolog

ROOT = Path(__file__).resolve().parent.parent
STDLIB_HANDLER = logging.handlers.QueueHandler
STDLIB_LISTENER = logging.handlers.QueueListener

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class ListHandler(logging.Handler):
    """Collects what it is given; its emit() says which thread ran it."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self.threads: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.threads.add(threading.current_thread().name)
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture(autouse=True)
def substituted(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiolog's classes under the stdlib's names, for the test."""
    monkeypatch.setattr(logging.handlers, "QueueHandler", aiolog.QueueHandler)
    monkeypatch.setattr(logging.handlers, "QueueListener", aiolog.QueueListener)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("test.dropin")
    log.disabled = False
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for handler in log.handlers[:]:
        log.removeHandler(handler)
        handler.close()


def test_substituted_classes_construct_without_recursion() -> None:
    """Base calls go through super(): the substituted names do not loop back."""
    q: queue.Queue[Any] = queue.Queue()
    handler = logging.handlers.QueueHandler(q)
    listener = logging.handlers.QueueListener(q, ListHandler())
    assert isinstance(handler, aiolog.QueueHandler)
    assert isinstance(listener, aiolog.QueueListener)
    assert handler.queue is q
    assert listener.queue is q


def stdlib_and_aiolog_queued(
    logger: logging.Logger, formatter: logging.Formatter | None, log: Any
) -> tuple[logging.LogRecord, logging.LogRecord]:
    """The record each handler puts on a queue.Queue for the same logging call."""
    queues: list[queue.Queue[Any]] = [queue.Queue(), queue.Queue()]
    handlers = [STDLIB_HANDLER(queues[0]), aiolog.QueueHandler(queues[1])]
    for handler in handlers:
        handler.setFormatter(formatter)  # type: ignore[arg-type]
        logger.addHandler(handler)
    log()
    return queues[0].get_nowait(), queues[1].get_nowait()


@pytest.mark.parametrize("formatter", [None, logging.Formatter("%(levelname)s|%(message)s")])
def test_a_foreign_queue_gets_what_the_stdlib_puts(
    logger: logging.Logger, formatter: logging.Formatter | None
) -> None:
    """msg is the handler's formatting (traceback and stack included), args/exc cleared."""

    def log() -> None:
        try:
            raise KeyError("k")
        except KeyError:
            logger.exception("failed %s of %d", [1, 2], 3, stack_info=True)

    stdlib, ours = stdlib_and_aiolog_queued(logger, formatter, log)
    assert stdlib.msg == ours.msg == ours.message
    assert "KeyError: 'k'" in ours.msg
    assert "Stack (most recent call last)" in ours.msg
    if formatter is not None:
        assert ours.msg.startswith("ERROR|failed [1, 2] of 3")
    assert ours.args is None
    assert stdlib.args is None
    assert ours.exc_info is None
    assert ours.exc_text is None
    assert ours.stack_info is None
    # what a listener on the other side makes of it: the same line as from the stdlib's
    other = logging.Formatter("%(name)s %(message)s")
    assert other.format(stdlib) == other.format(ours)


def test_a_formatter_on_the_handler_applies_on_aiolog_s_own_queue_too(
    logger: logging.Logger,
) -> None:
    handler = aiolog.QueueHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    sink = ListHandler()
    listener = aiolog.QueueListener(handler.queue, sink)
    logger.addHandler(handler)
    listener.start()
    logger.warning("hello %s", "you")
    assert listener.stop(5)
    assert ["WARNING|hello you"] == sink.messages
    assert sink.records[0].args is None


def test_the_foreign_record_pickles_and_carries_the_context_as_plain_data(
    logger: logging.Logger,
) -> None:
    """Task, coroutine and context variables travel as names and values."""
    import asyncio

    q: queue.Queue[Any] = queue.Queue()
    logger.addHandler(aiolog.QueueHandler(q))
    unpicklable = threading.Lock()
    note: contextvars.ContextVar[Any] = contextvars.ContextVar("note")

    async def handle_request() -> None:
        request_id.set("r-7")
        note.set(unpicklable)
        logger.info("inside")

    async def main() -> None:
        await asyncio.create_task(handle_request(), name="req-task")

    asyncio.run(main())
    record = pickle.loads(pickle.dumps(q.get_nowait()))
    assert "inside" == record.msg
    assert "req-task" == record.taskName
    assert record.aiolog_coro.endswith("handle_request")
    context = record.aiolog_context
    assert "r-7" == context["request_id"]
    assert repr(unpicklable) == context["note"]
    assert all(not name.startswith("_") for name in context)
    # aiolog's formatters read it as they read a live snapshot
    line = aiolog.JSONFormatter().format(record)
    assert '"request_id":"r-7"' in line
    assert '"task":"req-task"' in line


@pytest.mark.parametrize("respect", [False, True])
def test_listener_with_several_handlers_and_respect_handler_level(
    logger: logging.Logger, respect: bool
) -> None:
    """As the stdlib's: every handler gets every record, unless it respects their levels."""
    results = []
    for listener_class in (STDLIB_LISTENER, aiolog.QueueListener):
        q: queue.Queue[Any] = queue.Queue()
        handler = STDLIB_HANDLER(q)
        logger.handlers[:] = [handler]
        everything, errors_only = ListHandler(), ListHandler(logging.ERROR)
        listener = listener_class(q, everything, errors_only, respect_handler_level=respect)
        listener.start()
        logger.info("info")
        logger.error("error")
        listener.stop()
        results.append((everything.messages, errors_only.messages))
    assert results[0] == results[1]
    assert (["info", "error"], ["error"] if respect else ["info", "error"]) == results[1]


def test_listener_subclass_hooks_are_called(logger: logging.Logger) -> None:
    """dequeue(), prepare() and handle() per record, enqueue_sentinel() at stop."""
    calls: dict[str, int] = {"dequeue": 0, "prepare": 0, "handle": 0, "sentinel": 0}

    class Counting(aiolog.QueueListener):
        def dequeue(self, block: bool) -> logging.LogRecord:
            record = super().dequeue(block)
            if record is not None:
                calls["dequeue"] += 1
            return record

        def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
            calls["prepare"] += 1
            return super().prepare(record)

        def handle(self, record: logging.LogRecord) -> None:
            calls["handle"] += 1
            if record.getMessage() != "skip me":
                super().handle(record)

        def enqueue_sentinel(self) -> None:
            calls["sentinel"] += 1
            super().enqueue_sentinel()

    q: queue.Queue[Any] = queue.Queue()
    logger.addHandler(STDLIB_HANDLER(q))
    sink = ListHandler()
    listener = Counting(q, sink)
    listener.start()
    for i in range(100):
        logger.info("record %d", i)
    logger.info("skip me")
    assert listener.stop(5)
    assert [f"record {i}" for i in range(100)] == sink.messages
    assert {"dequeue": 101, "prepare": 100, "handle": 101, "sentinel": 1} == calls


def test_handle_override_on_aiolog_s_own_queue(logger: logging.Logger) -> None:
    seen = []

    class Tapping(aiolog.QueueListener):
        def handle(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())
            super().handle(record)

    handler = aiolog.QueueHandler()
    sink = ListHandler()
    listener = Tapping(handler.queue, sink)
    logger.addHandler(handler)
    listener.start()
    for i in range(1000):
        logger.info("record %d", i)
    assert listener.flush(5)
    assert seen == sink.messages == [f"record {i}" for i in range(1000)]
    assert listener.stop(5)


def test_multiprocessing_queue_in_process(logger: logging.Logger) -> None:
    """A multiprocessing.Queue carries aiolog's records (they pickle), exceptions too."""
    q: multiprocessing.Queue[Any] = multiprocessing.Queue()
    sink = ListHandler()
    listener = aiolog.QueueListener(q, sink)
    listener.start()
    logger.addHandler(aiolog.QueueHandler(q))
    try:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logger.exception("divided")
        logger.info("and on")
        assert listener.flush(10)
    finally:
        listener.stop(5)
        q.close()
        q.join_thread()
    assert ["divided", "and on"] == [m.split("\n")[0] for m in sink.messages]
    assert "ZeroDivisionError" in sink.messages[0]


def test_stop_on_a_multiprocessing_queue_drains_what_the_feeder_still_holds(
    logger: logging.Logger,
) -> None:
    """stop() right after logging: the records still in the queue's feeder thread arrive.

    As with the stdlib's listener, the stop sentinel follows them through the pipe.
    """
    q: multiprocessing.Queue[Any] = multiprocessing.Queue()
    sink = ListHandler()
    listener = aiolog.QueueListener(q, sink)
    listener.start()
    logger.addHandler(aiolog.QueueHandler(q))
    try:
        for i in range(5000):
            logger.info("record %d", i)
        assert listener.stop(10)
    finally:
        q.close()
        q.cancel_join_thread()  # what no one read stays unread: the assert below says so
    assert [f"record {i}" for i in range(5000)] == sink.messages


def test_dictconfig_with_a_queue_object_a_factory_and_a_listener_class() -> None:
    """The 3.12 dictConfig queue keys, through the stdlib's class name."""
    own: queue.Queue[Any] = queue.Queue(1000)  # (an unbounded one is replaced: see docs)
    sinks = {"a": ListHandler(), "b": ListHandler()}
    made: list[Any] = []

    class Listener(aiolog.QueueListener):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    def factory() -> queue.Queue[Any]:
        return own

    for key in ("object", "factory"):
        config = {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "a": {"()": lambda: sinks["a"]},
                "b": {"()": lambda: sinks["b"]},
                "q": {
                    "class": "logging.handlers.QueueHandler",
                    "handlers": ["a", "b"],
                    "queue": own if key == "object" else {"()": factory},
                    "listener": Listener,
                },
            },
            "loggers": {"dictq": {"handlers": ["q"], "level": "INFO", "propagate": False}},
        }
        logging.config.dictConfig(config)
        handler = logging.getLogger("dictq").handlers[0]
        assert isinstance(handler, aiolog.QueueHandler)
        assert handler.queue is own
        logging.getLogger("dictq").info("via %s", key)
        assert made[-1].flush(5)
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    assert ["via object", "via factory"] == sinks["a"].messages == sinks["b"].messages


def test_dictconfig_listener_with_no_handlers() -> None:
    """The stdlib accepts a queue handler with an empty handlers list."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"q": {"class": "logging.handlers.QueueHandler", "handlers": []}},
            "loggers": {"nowhere": {"handlers": ["q"]}},
        }
    )
    logging.getLogger("nowhere").warning("goes nowhere")
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


def test_extra_containers_are_what_they_were_at_the_call(logger: logging.Logger) -> None:
    handler = aiolog.QueueHandler()
    sink = ListHandler()
    listener = aiolog.QueueListener(handler.queue, sink)
    logger.addHandler(handler)
    listener.start()
    order: dict[str, Any] = {"items": 1}
    tags = ["a"]
    logger.info("order", extra={"order": order, "tags": tags, "n": 5})
    order["items"] = 2
    tags.append("b")
    assert listener.stop(5)
    record = sink.records[0]
    assert {"items": 1} == record.order
    assert ["a"] == record.tags
    assert 5 == record.n


def test_no_asyncio_chatter_from_aiolog_s_own_loops() -> None:
    """A DEBUG root logger does not get 'Using selector' from the listener's loop."""
    root = logging.getLogger()
    mine = ListHandler()
    root.addHandler(mine)
    root.setLevel(logging.DEBUG)
    handler = aiolog.QueueHandler()
    listener = aiolog.QueueListener(handler.queue, ListHandler())
    listener.start()
    assert listener.stop(5)
    assert not [m for m in mine.messages if m.startswith("Using selector")]
    # the filter is on asyncio's logger only while a listener runs
    assert not [f for f in logging.getLogger("asyncio").filters if "aiolog" in type(f).__module__]


def test_makelogrecord_copies_keep_the_context(logger: logging.Logger) -> None:
    """What structlog's ProcessorFormatter does to records: the context comes along."""
    copies: list[logging.LogRecord] = []

    class Copying(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            copy = logging.makeLogRecord(record.__dict__)
            copies.append(copy)
            return super().format(copy)

    sink = aiolog.sink("stderr")
    sink.setFormatter(Copying())
    pipeline = aiolog.configure([sink], level="INFO")
    request_id.set("r-9")
    logging.getLogger("copy").info("copied")
    assert pipeline.flush(5)
    context = copies[0].aiolog_context  # type: ignore[attr-defined]
    assert "r-9" == context[request_id]


def run_script(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``source`` as a script in a fresh interpreter (3.12+'s fork() warning off)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDEVMODE", None)
    return subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


COOKBOOK = """
import logging, logging.handlers, multiprocessing, sys
import aiolog

logging.handlers.QueueHandler = aiolog.QueueHandler  # aiolog in the stdlib's place
if sys.argv[2] == "aiolog":
    logging.handlers.QueueListener = aiolog.QueueListener

def worker(q, n):
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(q)]
    root.setLevel(logging.DEBUG)
    for i in range(1000):
        try:
            if i % 100 == 0:
                raise ValueError(i)
            logging.getLogger(f"child{{n}}").info("child %d record %d", n, i)
        except ValueError:
            logging.getLogger(f"child{{n}}").exception("child %d record %d", n, i)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    q = ctx.Queue(-1)
    handler = logging.FileHandler({out!r})
    handler.setFormatter(logging.Formatter("%(name)s|%(message)s"))
    listener = logging.handlers.QueueListener(q, handler)
    listener.start()
    procs = [ctx.Process(target=worker, args=(q, n)) for n in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    listener.stop()
    handler.close()
"""


@pytest.mark.parametrize("listener", ["stdlib", "aiolog"])
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_cookbook_multiprocessing_recipe_delivers_everything(
    tmp_path: Path, method: str, listener: str
) -> None:
    """The logging cookbook's recipe with aiolog's handler in the children."""
    if method == "fork" and not hasattr(os, "fork"):
        pytest.skip("needs fork")
    out = tmp_path / "mp.log"
    proc = run_script(tmp_path, COOKBOOK.format(out=str(out)), method, listener)
    assert 0 == proc.returncode, proc.stderr
    assert "" == proc.stderr
    heads = [line for line in out.read_text().splitlines() if line.startswith("child")]
    expected = {f"child{n}|child {n} record {i}" for n in range(8) for i in range(1000)}
    assert expected == set(heads)
    assert len(expected) == len(heads)
    assert 80 == out.read_text().count("ValueError: ")


FORKED_SHARED = """
import logging, logging.handlers, multiprocessing, os, sys
import aiolog

q = multiprocessing.get_context("fork").Queue(-1)
handler = logging.FileHandler({out!r})
listener = aiolog.QueueListener(q, handler)
listener.start()
pid = os.fork()
if pid == 0:
    ok = not listener.running  # the parent's listener drains the shared queue, not a copy
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(q)]  # the stdlib's
    for i in range(2000):
        root.warning("child %d", i)
    q.close()
    q.join_thread()
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
listener.stop()
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_listener_on_a_shared_queue_stays_in_the_parent(tmp_path: Path) -> None:
    out = tmp_path / "shared.log"
    proc = run_script(tmp_path, FORKED_SHARED.format(out=str(out)))
    assert 0 == proc.returncode, proc.stderr
    assert "0" == proc.stdout.strip()
    assert [f"child {i}" for i in range(2000)] == out.read_text().splitlines()
