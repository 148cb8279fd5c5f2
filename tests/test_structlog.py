"""aiolog.structlog: structlog through aiolog's queue, rendered in the listener."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.contextvars

import aiolog
import aiolog.structlog
from aiolog import JSONFormatter, LogfmtFormatter, QueueHandler, TextFormatter
from aiolog.structlog import AiologLogger, EventDict, add_task_context, to_aiolog
from aiolog.testing import CaptureSink
from tests.helpers import run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """structlog's global configuration and context back to their defaults."""
    structlog.contextvars.clear_contextvars()
    try:
        yield
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


@pytest.fixture
def sink() -> CaptureSink:
    """A capturing sink behind aiolog.configure(structlog=True), JSON-formatted."""
    capture = CaptureSink()
    capture.setFormatter(JSONFormatter())
    aiolog.configure([capture], level="DEBUG", structlog=True)
    return capture


def lines(sink: CaptureSink) -> list[dict[str, Any]]:
    """Flush the pipeline; the captured records as JSONFormatter renders them."""
    pipeline = aiolog.get_pipeline()
    assert pipeline is not None
    assert pipeline.flush(5)
    assert sink.formatter is not None
    records = [r for r in sink.records if r.name not in ("aiolog", "asyncio")]
    return [json.loads(sink.formatter.format(r)) for r in records]


def test_aiolog_structlog_is_not_the_structlog_package(tmp_path: Path) -> None:
    """aiolog.structlog imports the real structlog (absolute imports): no shadowing."""
    assert sys.modules["structlog"] is aiolog.structlog.structlog
    assert Path(structlog.__file__).parent != Path(aiolog.__file__).parent
    code = (
        "import aiolog.structlog, structlog, structlog.stdlib\n"
        "assert aiolog.structlog.structlog is structlog\n"
        "print(structlog.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(out.stdout.strip()).parent == Path(structlog.__file__).parent


def test_event_dict_becomes_top_level_json_fields(sink: CaptureSink) -> None:
    """Keys are top-level fields, nested values stay JSON, the event is the message."""
    structlog.get_logger("app").info(
        "user logged in", user="ann", roles=["admin", "dev"], limits={"rps": 5}
    )
    (line,) = lines(sink)
    assert "user logged in" == line["message"]
    assert ("info", "app") == (line["level"], line["logger"])
    assert "ann" == line["user"]
    assert ["admin", "dev"] == line["roles"]
    assert {"rps": 5} == line["limits"]
    assert "event" not in line


def test_the_record_carries_the_event_dict_intact(sink: CaptureSink) -> None:
    """The queued record's msg is the event dict (an EventDict), not a string (structlog #702)."""
    structlog.get_logger("app").info("hello", n=1)
    lines(sink)
    (record,) = sink.records
    assert isinstance(record.msg, EventDict)
    assert {"event": "hello", "n": 1} == dict(record.msg)
    assert "hello" == record.getMessage()


def test_values_are_frozen_at_the_call(sink: CaptureSink) -> None:
    """A list changed after the call is written as it was; objects as their repr then."""

    class Box:
        def __init__(self) -> None:
            self.state = "before"

        def __repr__(self) -> str:
            return f"Box({self.state})"

    items = [1, 2]
    box = Box()
    structlog.get_logger("app").info("snapshot", items=items, box=box)
    items.append(3)
    box.state = "after"
    (line,) = lines(sink)
    assert [1, 2] == line["items"]
    assert "Box(before)" == line["box"]


def test_levels_are_the_stdlib_loggers(sink: CaptureSink) -> None:
    """A stdlib level on the logger's name silences structlog calls below it."""
    logging.getLogger("quiet").setLevel(logging.WARNING)
    try:
        log = structlog.get_logger("quiet")
        log.info("dropped")
        log.warning("kept")
    finally:
        logging.getLogger("quiet").setLevel(logging.NOTSET)
    assert ["kept"] == [line["message"] for line in lines(sink)]


def test_stdlib_and_structlog_records_share_sinks_and_bindings(sink: CaptureSink) -> None:
    """Records of one request, from logging and structlog, both carry request_id."""

    async def request() -> None:
        structlog.contextvars.bind_contextvars(request_id="r-7")
        logging.getLogger("app").info("stdlib record")
        structlog.get_logger("app").info("structlog record", step=2)

    run(request)
    stdlib, struct = lines(sink)
    assert ("r-7", "r-7") == (stdlib["request_id"], struct["request_id"])
    assert ("stdlib record", "structlog record") == (stdlib["message"], struct["message"])


def test_event_keys_win_over_bindings(sink: CaptureSink) -> None:
    """As structlog's merge_contextvars: a key given in the call beats the bound value."""
    structlog.contextvars.bind_contextvars(user="bound", other="o")
    structlog.get_logger("app").info("x", user="given")
    (line,) = lines(sink)
    assert ("given", "o") == (line["user"], line["other"])


def test_records_carry_task_context(sink: CaptureSink) -> None:
    """task and coro name the asyncio task that logged."""

    async def handler() -> None:
        structlog.get_logger("app").info("in a task")

    async def main() -> None:
        await asyncio.create_task(handler(), name="req-1")

    run(main)
    (line,) = lines(sink)
    assert ("req-1", "test_records_carry_task_context.<locals>.handler") == (
        line["task"],
        line["coro"],
    )


def test_thousand_concurrent_tasks_keep_their_own_bindings(
    sink: CaptureSink, loop_factory: Any
) -> None:
    """1 000 tasks bind their own contextvars; each record carries its own task's values."""
    n = 1000

    async def worker(i: int) -> None:
        structlog.contextvars.bind_contextvars(request_id=f"r-{i}", worker=i)
        log = structlog.get_logger("app")
        for step in range(3):
            log.info("step", step=step)
            logging.getLogger("app").info("stdlib step %d", step)
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(asyncio.create_task(worker(i), name=f"w-{i}") for i in range(n)))

    run(main, loop_factory)
    records = lines(sink)
    assert 6 * n == len(records)
    for line in records:
        i = line["worker"]
        assert (f"r-{i}", f"w-{i}") == (line["request_id"], line["task"])
    assert set(range(n)) == {line["worker"] for line in records}


def test_exception_is_captured_on_the_caller(sink: CaptureSink) -> None:
    """log.exception() keeps the exception, rendered structured in the listener."""
    try:
        raise KeyError("missing")
    except KeyError:
        structlog.get_logger("app").exception("failed", item=3)
    (line,) = lines(sink)
    assert ("error", "failed", 3) == (line["level"], line["message"], line["item"])
    assert "KeyError" == line["exception"]["type"]
    assert "KeyError: 'missing'" in line["exception"]["traceback"]
    assert "exc_info" not in line


def test_exc_info_given_as_an_exception(sink: CaptureSink) -> None:
    """exc_info=<exception> works outside an except block too."""
    error = ValueError("bad")
    structlog.get_logger("app").warning("saw", exc_info=error)
    (line,) = lines(sink)
    assert ("ValueError", "bad") == (line["exception"]["type"], line["exception"]["message"])


def test_positional_arguments_format_in_the_listener(sink: CaptureSink) -> None:
    """log.info("%s items", n) renders like logging does."""
    structlog.get_logger("app").info("%d items in %s", 3, "cart", user="ann")
    (line,) = lines(sink)
    assert ("3 items in cart", "ann") == (line["message"], line["user"])


def test_bound_values_and_unbind(sink: CaptureSink) -> None:
    """bind() adds fields to every call of that logger; unbind() removes them."""
    log = structlog.get_logger("app").bind(user="ann", session="s1")
    log.info("one")
    log.unbind("session").info("two")
    one, two = lines(sink)
    assert ("ann", "s1") == (one["user"], one["session"])
    assert "session" not in two


def test_async_methods_log_at_once_on_the_calling_thread(sink: CaptureSink) -> None:
    """await log.ainfo() logs before it returns, from the loop's thread, no executor."""

    async def main() -> None:
        log = structlog.get_logger("app")
        await log.ainfo("async", n=1)
        await log.awarning("async warning")

    run(main)
    first, second = lines(sink)
    assert ("async", "MainThread") == (first["message"], first["thread"])
    assert "warning" == second["level"]
    assert threading.main_thread().name == second["thread"]


def test_caller_location_is_the_line_that_logged(sink: CaptureSink) -> None:
    """funcName and lineno point at the application's call, not at structlog or aiolog."""
    import inspect

    line_no = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    structlog.get_logger("app").info("where")
    lines(sink)
    (record,) = sink.records
    assert (__file__, line_no) == (record.pathname, record.lineno)
    assert "test_caller_location_is_the_line_that_logged" == record.funcName


def test_user_processors_run_on_the_caller() -> None:
    """Processors given to configure_structlog run before to_aiolog; DropEvent drops."""
    capture = CaptureSink()
    aiolog.configure([capture])

    def tag(logger: Any, method: str, event_dict: Any) -> Any:
        if event_dict.get("drop"):
            raise structlog.DropEvent
        event_dict["tagged"] = method
        return event_dict

    aiolog.structlog.configure_structlog([tag])
    log = structlog.get_logger("app")
    log.info("kept")
    log.info("gone", drop=True)
    pipeline = aiolog.get_pipeline()
    assert pipeline is not None
    assert pipeline.flush(5)
    (record,) = capture.records
    assert "info" == record.msg["tagged"]


def test_filters_and_several_handlers_get_their_own_copy() -> None:
    """With two handlers on the way, each queue gets its own copy; handler filters apply."""
    first, second = CaptureSink("first"), CaptureSink("second")
    one, two = QueueHandler(), QueueHandler()
    one.listener = aiolog.QueueListener(one.queue, first)
    two.listener = aiolog.QueueListener(two.queue, second)
    two.addFilter(lambda record: record.msg.get("keep", False))
    logger = logging.getLogger("multi")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [one, two]
    aiolog.structlog.configure_structlog()
    try:
        log = structlog.get_logger("multi")
        log.info("both", keep=True)
        log.info("first only")
        assert one.listener.flush(5)
        assert two.listener.flush(5)
        assert ["both", "first only"] == first.messages
        assert ["both"] == second.messages
        assert first.records[0] is not second.records[0]
    finally:
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
        one.close()
        two.close()


def test_stdlib_integration_route_also_keeps_the_dict(sink: CaptureSink) -> None:
    """structlog.stdlib's LoggerFactory and BoundLogger ending in to_aiolog work too."""
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, to_aiolog],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    structlog.get_logger("app").info("via stdlib", n=[1, 2])
    (line,) = lines(sink)
    assert ("via stdlib", [1, 2]) == (line["message"], line["n"])


def test_wrap_for_formatter_records_are_not_stringified(sink: CaptureSink) -> None:
    """structlog's ProcessorFormatter recipe through aiolog's handler keeps the dict (#702)."""
    structlog.configure(
        processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    structlog.get_logger("app").info("wrapped", n=1)
    (line,) = lines(sink)
    assert ("wrapped", 1) == (line["message"], line["n"])


def test_processor_formatter_renders_aiolog_records() -> None:
    """A sink may use structlog's ProcessorFormatter; bindings come from the snapshot."""
    capture = CaptureSink()
    capture.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                aiolog.structlog.merge_record_contextvars,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(sort_keys=True),
            ]
        )
    )
    aiolog.configure([capture], structlog=True)
    structlog.contextvars.bind_contextvars(request_id="r-1")
    structlog.get_logger("app").info("rendered by structlog", n=1)
    pipeline = aiolog.get_pipeline()
    assert pipeline is not None
    assert pipeline.flush(5)
    (record,) = capture.records
    assert {"event": "rendered by structlog", "n": 1, "request_id": "r-1"} == json.loads(
        capture.format(record)
    )


def test_logfmt_and_text_show_the_fields(sink: CaptureSink) -> None:
    """logfmt and text formatters render the event dict's keys too."""
    structlog.get_logger("app").info("shown", user="ann")
    lines(sink)
    (record,) = sink.records
    assert "msg=shown" in LogfmtFormatter().format(record)
    assert "user=ann" in LogfmtFormatter().format(record)
    assert "user=ann" in TextFormatter().format(record)


def test_add_task_context_in_a_task_a_callback_and_a_thread() -> None:
    """add_task_context names the task, the loop callback, or the to_thread origin."""
    seen: dict[str, Any] = {}

    def callback() -> None:
        seen["callback"] = add_task_context(None, "info", {})

    async def in_task() -> None:
        seen["task"] = add_task_context(None, "info", {})
        asyncio.get_running_loop().call_soon(callback)
        await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.create_task(in_task(), name="t-1")

    run(main)
    seen["thread"] = add_task_context(None, "info", {})
    assert {"task": "t-1", "coro": in_task.__qualname__} == seen["task"]
    assert callback.__qualname__ == seen["callback"]["callback"]
    assert {} == seen["thread"]


def test_aiolog_logger_is_a_logging_logger_stand_in(sink: CaptureSink) -> None:
    """AiologLogger takes logging.Logger's arguments; the record is a normal one."""
    log = AiologLogger("app.direct")
    log.info("plain %s", "args", extra={"user": "ann"})
    assert log.isEnabledFor(logging.INFO)
    (line,) = lines(sink)
    assert ("plain args", "ann", "app.direct") == (line["message"], line["user"], line["logger"])


EXIT_SCRIPT = """
import asyncio, sys
import aiolog, structlog

aiolog.configure(["file:" + sys.argv[1] + "?format=json"], structlog=True)


async def main():
    log = structlog.get_logger("app")
    for i in range(3000):
        log.info("record", i=i)


asyncio.run(main())
"""


def test_structlog_records_are_drained_at_exit(tmp_path: Path) -> None:
    """structlog records share the exit drain: all of them are in the file."""
    out = tmp_path / "app.jsonl"
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(EXIT_SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), str(out)], env=env, capture_output=True, text=True, timeout=60
    )
    assert 0 == proc.returncode, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert list(range(3000)) == [r["i"] for r in records]
