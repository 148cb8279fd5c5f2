"""FastLogRecord: the records it makes are the stdlib's, attribute for attribute."""

from __future__ import annotations

import asyncio
import copy
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import aiolog
from aiolog import FastLogRecord, _factory
from aiolog.testing import CaptureSink
from tests.helpers import run

NOW = 1_700_000_000.9996  # a fraction of a second that rounds differently per formula
NOW_NS = 1_700_000_000_999_600_123


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both factories read the same instant (they read the clock through different names)."""
    monkeypatch.setattr(time, "time", lambda: NOW)
    monkeypatch.setattr(time, "time_ns", lambda: NOW_NS)
    monkeypatch.setattr(_factory, "_time", time.time_ns if _factory._NS_CLOCK else time.time)


@pytest.fixture
def default_factory() -> Iterator[None]:
    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


def both(*args: Any, **kwargs: Any) -> tuple[list[Any], list[Any]]:
    """(stdlib items, fast items) of ``__dict__``, in attribute order."""
    stdlib = logging.LogRecord(*args, **kwargs)
    fast = FastLogRecord(*args, **kwargs)
    return list(stdlib.__dict__.items()), list(fast.__dict__.items())


CASES = {
    "plain": ("app", logging.INFO, "/srv/app/handlers.py", 12, "n=%d", (1,), None, "f"),
    "two args": ("app", logging.WARNING, "/srv/app/a.b.py", 1, "%s %s", ("x", 2), None),
    "one mapping arg": ("app", logging.INFO, "x.py", 1, "%(a)s", ({"a": 1},), None),
    "one empty mapping": ("app", logging.INFO, "x.py", 1, "%s", ({},), None),
    "no args": ("app", logging.ERROR, "/x/y", 1, "m", (), None, None, "stack"),
    "makeLogRecord": (None, None, "", 0, "", (), None, None),
    "unknown level": ("app", 33, "/x/y.py", 1, "m", None, None),
    "level by name": ("app", "INFO", "/x/y.py", 1, "m", None, None),
    "pathname None": ("app", logging.INFO, None, 1, "m", None, None),
    "pathname unhashable": ("app", logging.INFO, ["not", "a", "path"], 1, "m", None, None),
    "exc_info": ("app", logging.ERROR, "/x/y.py", 1, "m", None, (None, None, None)),
}


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_same_attributes_same_values_same_order(case: tuple[Any, ...]) -> None:
    """Every attribute, in the stdlib's order, for ordinary and odd arguments alike."""
    stdlib, fast = both(*case)
    assert stdlib == fast


@pytest.mark.usefixtures("frozen_clock")
def test_same_on_a_named_thread_in_a_task_in_a_named_process() -> None:
    """threadName, processName (renamed at run time) and, on 3.12+, taskName."""
    process = multiprocessing.current_process()
    name = process.name
    process.name = "worker-7"
    results: list[tuple[list[Any], list[Any]]] = []

    async def in_task() -> None:
        results.append(both("app", logging.INFO, "/x/y.py", 1, "m", None, None))

    def target() -> None:
        run(in_task)

    try:
        thread = threading.Thread(target=target, name="io-thread")
        thread.start()
        thread.join(10)
    finally:
        process.name = name
    (pair,) = results
    stdlib, fast = pair
    assert stdlib == fast
    assert ("threadName", "io-thread") in fast
    assert ("processName", "worker-7") in fast


@pytest.mark.usefixtures("frozen_clock")
def test_a_custom_level_name_is_seen() -> None:
    """addLevelName() after import is honoured (the level table is read, not copied)."""
    logging.addLevelName(25, "NOTICE")
    try:
        stdlib, fast = both("app", 25, "/x/y.py", 1, "m", None, None)
    finally:
        logging.addLevelName(25, "Level 25")
    assert stdlib == fast
    assert ("levelname", "NOTICE") in fast


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("flag", ["logThreads", "logMultiprocessing", "logProcesses"])
def test_the_logging_module_flags_are_honoured(flag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a flag turned off, the record leaves out what the stdlib leaves out."""
    monkeypatch.setattr(logging, flag, False)
    stdlib, fast = both("app", logging.INFO, "/x/y.py", 1, "m", None, None)
    assert stdlib == fast


def test_the_path_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code compiled under ever new names does not grow the cache without end."""
    monkeypatch.setattr(_factory, "_MAX_PATHS", 8)
    monkeypatch.setattr(_factory, "_paths", {})
    for i in range(50):
        record = FastLogRecord("app", logging.INFO, f"<string-{i}>.py", 1, "m", None, None)
        assert f"<string-{i}>" == record.module
    assert len(_factory._paths) <= 8


def test_copies_and_pickles_are_plain_log_records() -> None:
    """A receiver of a pickled record (a multiprocessing queue) needs no aiolog."""
    record = FastLogRecord("app", logging.INFO, "/x/y.py", 1, "n=%d", (1,), None)
    for clone in (copy.copy(record), pickle.loads(pickle.dumps(record))):
        assert logging.LogRecord is type(clone)
        assert record.__dict__ == clone.__dict__
    assert b"aiolog" not in pickle.dumps(record)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_records_its_own_pid() -> None:
    """The cached process id is refreshed in a forked child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            record = FastLogRecord("app", logging.INFO, "/x/y.py", 1, "m", None, None)
            os.write(write, str(record.process).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        assert str(pid) == f.read()
    assert os.getpid() == FastLogRecord("app", 20, "/x/y.py", 1, "m", None, None).process


@pytest.mark.usefixtures("default_factory")
def test_configure_installs_it_and_shutdown_restores_the_default() -> None:
    """configure() makes it the factory; records come out as before; shutdown() undoes it."""
    sink = CaptureSink()
    aiolog.configure([sink])
    assert FastLogRecord is logging.getLogRecordFactory()
    logging.getLogger("app").info("n=%d", 1)
    assert aiolog.get_pipeline() is not None
    assert aiolog.get_pipeline().flush(5)  # type: ignore[union-attr]
    assert ["n=1"] == sink.messages
    aiolog.shutdown()
    assert logging.LogRecord is logging.getLogRecordFactory()


@pytest.mark.usefixtures("default_factory")
def test_an_applications_own_factory_is_left_alone() -> None:
    """A factory the application set (it may add fields) is never replaced or removed."""

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = logging.LogRecord(*args, **kwargs)
        record.region = "eu"
        return record

    logging.setLogRecordFactory(factory)
    aiolog.configure([CaptureSink()])
    assert factory is logging.getLogRecordFactory()
    aiolog.shutdown()
    assert factory is logging.getLogRecordFactory()


@pytest.mark.usefixtures("default_factory")
def test_record_factory_false_keeps_the_default() -> None:
    """configure(record_factory=False) opts out."""
    aiolog.configure([CaptureSink()], record_factory=False)
    assert logging.LogRecord is logging.getLogRecordFactory()


def test_task_name_matches_the_stdlib_inside_and_outside_tasks() -> None:
    """taskName (3.12+) is the running task's name, None outside a task."""

    async def main() -> tuple[Any, Any]:
        inside = FastLogRecord("app", 20, "/x/y.py", 1, "m", None, None)
        return getattr(inside, "taskName", "absent"), asyncio.current_task()

    name, task = run(main)
    outside = FastLogRecord("app", 20, "/x/y.py", 1, "m", None, None)
    if _factory._HAS_TASKNAME:
        assert task.get_name() == name
        assert outside.taskName is None
    else:
        assert "absent" == name
