"""asyncio's pitfalls, triggered for real, arrive as structured records (asyncio and uvloop)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import logging
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import aiolog
from aiolog import asyncio_diag
from aiolog._executor import INTERNAL_THREADS
from aiolog.formatting import JSONFormatter, LogfmtFormatter, TextFormatter, record_to_dict
from aiolog.testing import CaptureSink
from tests.helpers import LoopFactory, run

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.fixture
def sink() -> CaptureSink:
    """A capture sink behind a real pipeline made by configure()."""
    capture = CaptureSink()
    aiolog.configure([capture])
    return capture


def flushed(sink: CaptureSink, diagnostic: str | None = None) -> list[logging.LogRecord]:
    """Flush the pipeline; the captured records (of one kind of diagnostic, if given)."""
    pipeline = aiolog.get_pipeline()
    assert pipeline is not None
    assert pipeline.flush()
    if diagnostic is None:
        return list(sink.records)
    return [r for r in sink.records if r.__dict__.get("diagnostic") == diagnostic]


def run_driven(
    main: Callable[[], Coroutine[Any, Any, None]], loop_factory: LoopFactory, debug: bool = False
) -> None:
    """Run ``main`` as applications do: asyncio.Runner, or asyncio.run/uvloop.run on 3.10."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory, debug=debug) as runner:
            runner.run(main())
    elif "uvloop" in getattr(loop_factory, "__module__", ""):
        import uvloop

        uvloop.run(main(), debug=debug)
    else:
        asyncio.run(main(), debug=debug)


async def fail() -> None:
    """A task that fails."""
    raise KeyError("lost")


def raise_in_callback() -> None:
    """A loop callback that fails."""
    raise ValueError("callback failed")


def slow_callback() -> None:
    """A loop callback that blocks the loop: the pitfall itself."""
    time.sleep(0.06)


async def slow_step() -> None:
    """A task whose one step blocks the loop."""
    time.sleep(0.06)  # noqa: ASYNC251 - the pitfall itself


async def forgotten() -> None:
    """A coroutine function someone calls and forgets to await."""


# ---------------------------------------------------------------------------- exception handler


def test_task_exception_never_retrieved(sink: CaptureSink, loop_factory: LoopFactory) -> None:
    """A failed task dropped unawaited: task, coro, future, exception, creation traceback."""

    async def main() -> None:
        task = asyncio.create_task(fail(), name="doomed")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert task.done()
        del task
        gc.collect()

    run(main, loop_factory)
    (record,) = flushed(sink, "never_retrieved")
    assert "asyncio" == record.name
    assert logging.ERROR == record.levelno
    assert "Task exception was never retrieved" == record.getMessage()
    assert "doomed" == record.taskName
    assert "fail" == record.aiolog_coro
    assert record.future.startswith("<Task finished name='doomed'")
    assert record.exc_info is not None
    assert KeyError is record.exc_info[0]
    assert any(frame.endswith(" in main") for frame in record.source_traceback)
    exception = record_to_dict(record)["exception"]
    assert "KeyError" == exception["type"]
    assert "'lost'" == exception["message"]
    assert 'raise KeyError("lost")' in exception["traceback"]


def test_never_retrieved_collected_after_the_loop_closed(
    sink: CaptureSink, loop_factory: LoopFactory
) -> None:
    """Collected after the loop is gone (no loop on the thread): the task is still named."""
    kept: list[asyncio.Task[None]] = []

    async def main() -> None:
        kept.append(asyncio.create_task(fail(), name="late"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    run(main, loop_factory)
    kept.clear()
    gc.collect()
    (record,) = flushed(sink, "never_retrieved")
    assert "late" == record.taskName
    assert "fail" == record.aiolog_coro


def test_pending_task_destroyed(sink: CaptureSink, loop_factory: LoopFactory) -> None:
    """A task still pending when its closed loop is dropped is reported by name."""
    loop = loop_factory()
    loop.set_debug(True)
    forever = loop.create_future()

    async def waits(future: asyncio.Future[None]) -> None:
        await future

    task = loop.create_task(waits(forever), name="stuck")
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    del task, forever
    gc.collect()
    (record,) = flushed(sink, "pending_task_destroyed")
    assert "Task was destroyed but it is pending!" == record.getMessage()
    assert "stuck" == record.taskName
    assert "<Task pending name='stuck'" in record.future


def test_exception_in_callback(sink: CaptureSink, loop_factory: LoopFactory) -> None:
    """A callback that raises: callback, handle, exception and where it was scheduled."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        request_id.set("r-9")
        loop.call_soon(raise_in_callback)
        request_id.set("changed after scheduling")
        await asyncio.sleep(0)  # the callback is ahead of this task in the ready queue

    run(main, loop_factory)
    (record,) = flushed(sink, "callback_exception")
    assert "r-9" == record.aiolog_context[request_id]
    assert record.getMessage().startswith("Exception in callback")
    assert "raise_in_callback" == record.aiolog_callback
    assert record.taskName is None
    assert "raise_in_callback" in record.handle
    assert ValueError is record.exc_info[0]  # type: ignore[index]
    assert any(frame.endswith(" in main") for frame in record.source_traceback)


def test_records_reach_loops_made_by_runners_after_configure(
    sink: CaptureSink, loop_factory: LoopFactory
) -> None:
    """configure() then asyncio.Runner / asyncio.run / uvloop.run: the loop is covered."""

    async def main() -> None:
        asyncio.get_running_loop().call_soon(raise_in_callback)
        await asyncio.sleep(0)  # the callback is ahead of this task in the ready queue

    run_driven(main, loop_factory)
    (record,) = flushed(sink, "callback_exception")
    assert "raise_in_callback" == record.aiolog_callback


def test_loop_running_when_configure_is_called(loop_factory: LoopFactory) -> None:
    """configure() from inside a running loop puts the handler on that loop."""
    sink = CaptureSink()

    async def main() -> None:
        aiolog.configure([sink])
        asyncio.get_running_loop().call_soon(raise_in_callback)
        await asyncio.sleep(0)  # the callback is ahead of this task in the ready queue

    asyncio_diag.uninstall()
    run(main, loop_factory)
    (record,) = flushed(sink, "callback_exception")
    assert "raise_in_callback" == record.aiolog_callback


def test_existing_handler_is_chained(loop_factory: LoopFactory) -> None:
    """A handler set before aiolog arrives still runs, after aiolog's record; no duplicate."""
    sink = CaptureSink()
    seen: list[str] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(context["message"])
        loop.default_exception_handler(context)  # deferring to the default: no second record

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(handler)
        aiolog.configure([sink])
        loop.call_soon(raise_in_callback)
        await asyncio.sleep(0)  # the callback is ahead of this task in the ready queue
        assert loop.get_exception_handler() is not handler

    run(main, loop_factory)
    assert 1 == len(seen)
    assert seen[0].startswith("Exception in callback")
    assert 1 == len(flushed(sink, "callback_exception"))
    assert [] == [r for r in sink.records if r.name == "asyncio" and "diagnostic" not in r.__dict__]


def test_handler_set_before_the_loop_runs_is_chained(
    sink: CaptureSink, loop_factory: LoopFactory
) -> None:
    """A handler set between creating a loop and running it is chained at the start."""
    seen: list[str] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(context["message"])

    async def main() -> None:
        asyncio.get_running_loop().call_soon(raise_in_callback)
        await asyncio.sleep(0)  # the callback is ahead of this task in the ready queue

    loop = loop_factory()
    loop.set_exception_handler(handler)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert 1 == len(seen)
    (record,) = flushed(sink, "callback_exception")
    assert "raise_in_callback" == record.aiolog_callback


def test_handler_set_later_keeps_control(sink: CaptureSink, loop_factory: LoopFactory) -> None:
    """A handler the application sets later replaces aiolog's; its default is structured."""
    seen: list[str] = []

    def quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append("quiet")

    def deferring(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append("deferring")
        loop.default_exception_handler(context)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(quiet)
        loop.call_soon(raise_in_callback)
        await asyncio.sleep(0)  # the callback is ahead of this task in the ready queue
        loop.set_exception_handler(deferring)
        loop.call_soon(raise_in_callback)
        await asyncio.sleep(0)  # the callback is ahead of this task in the ready queue

    run(main, loop_factory)
    assert ["quiet", "deferring"] == seen
    (record,) = flushed(sink, "callback_exception")
    assert "raise_in_callback" == record.aiolog_callback


def test_exception_handler_never_raises_and_keeps_unknown_keys(
    sink: CaptureSink, loop_factory: LoopFactory
) -> None:
    """Odd context keys become repr strings; a broken __repr__ does not break the record."""

    class BrokenRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    async def main() -> None:
        asyncio.get_running_loop().call_exception_handler(
            {
                "message": "Fatal error on transport",
                "protocol": BrokenRepr(),
                "transport": "tcp-transport",
                "context": {"nested": True},
                "exception": OSError("reset"),
            }
        )

    run(main, loop_factory)
    (record,) = flushed(sink, "loop_exception")
    assert "Fatal error on transport" == record.getMessage()
    assert record.protocol.startswith("<unrepresentable")
    assert "'tcp-transport'" == record.transport
    assert "{'nested': True}" == record.asyncio_context


def test_record_from_an_internal_thread_is_handed_to_the_loop(
    sink: CaptureSink, loop_factory: LoopFactory
) -> None:
    """The collector may run __del__ on aiolog's listener thread: the record still arrives."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(fail(), name="collected-elsewhere")
        await asyncio.sleep(0)
        task.exception()  # retrieved: no report of its own when collected

        def report() -> None:
            INTERNAL_THREADS.add(threading.get_ident())
            try:
                asyncio_diag.exception_handler(
                    loop, {"message": "reported off the loop", "future": task}
                )
            finally:
                INTERNAL_THREADS.discard(threading.get_ident())

        await asyncio.to_thread(report)  # its record is queued on the loop before this returns

    run(main, loop_factory)
    (record,) = flushed(sink, "loop_exception")
    assert "reported off the loop" == record.getMessage()
    assert "collected-elsewhere" == record.taskName


# ---------------------------------------------------------------------------- slow callbacks


def test_slow_callback(loop_factory: LoopFactory) -> None:
    """A callback that blocks under debug mode: duration, callback, handle."""
    sink = CaptureSink()
    aiolog.configure([sink], asyncio_debug=True, asyncio_slow_callback=0.05)

    async def main() -> None:
        asyncio.get_running_loop().call_soon(slow_callback)
        await asyncio.sleep(0)  # the callback is ahead of this task in the ready queue

    run(main, loop_factory)
    slow = flushed(sink, "slow_callback")
    (record,) = [r for r in slow if r.aiolog_callback == "slow_callback"]
    assert "asyncio" == record.name
    assert logging.WARNING == record.levelno
    assert 0.05 < record.duration
    assert isinstance(record.duration, float)
    assert "slow_callback" == record.aiolog_callback
    assert record.taskName is None
    assert "slow_callback" in record.handle
    assert record.getMessage().startswith("Executing <")
    assert record.getMessage().endswith(" seconds")


def test_slow_task_step(loop_factory: LoopFactory) -> None:
    """A task step that blocks under debug mode names the task and its coroutine."""
    sink = CaptureSink()
    aiolog.configure([sink], asyncio_debug=True, asyncio_slow_callback=0.05)

    async def main() -> None:
        await asyncio.create_task(slow_step(), name="slowpoke")

    run_driven(main, loop_factory)
    slow = flushed(sink, "slow_callback")
    (record,) = [r for r in slow if r.taskName == "slowpoke"]
    assert "slow_step" == record.aiolog_coro
    assert record.__dict__.get("aiolog_callback") is None
    assert 0.05 < record.duration
    assert "name='slowpoke'" in record.handle


def test_slow_callback_threshold_from_configure(loop_factory: LoopFactory) -> None:
    """asyncio_slow_callback sets the loops' slow_callback_duration; shutdown restores it."""
    aiolog.configure([CaptureSink()], asyncio_debug=True, asyncio_slow_callback=0.25)
    loop = loop_factory()
    try:
        assert 0.25 == loop.slow_callback_duration
        assert loop.get_debug()
        aiolog.shutdown()
        assert 0.1 == loop.slow_callback_duration
        assert not loop.get_debug()
    finally:
        loop.close()


# ---------------------------------------------------------------------------- never awaited


@pytest.mark.filterwarnings("always::RuntimeWarning")
def test_coroutine_never_awaited(sink: CaptureSink, loop_factory: LoopFactory) -> None:
    """A forgotten coroutine collected by gc: its name and, in debug mode, where it was made."""

    async def main() -> None:
        coro = forgotten()
        del coro
        gc.collect()

    run(main, loop_factory)
    (record,) = flushed(sink, "never_awaited")
    assert "py.warnings" == record.name
    assert "coroutine 'forgotten' was never awaited" == record.getMessage()
    assert "forgotten" == record.coroutine
    assert record.source_traceback[-1].endswith(" in main")


@pytest.mark.filterwarnings("always::RuntimeWarning")
def test_coroutine_never_awaited_without_debug(sink: CaptureSink) -> None:
    """Without debug mode the record names the coroutine and has no origin."""
    coro = forgotten()
    del coro
    gc.collect()
    (record,) = flushed(sink, "never_awaited")
    assert "forgotten" == record.coroutine
    assert "source_traceback" not in record.__dict__


def test_never_awaited_still_obeys_warning_filters(sink: CaptureSink) -> None:
    """An ignore filter still silences the warning: no record."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        coro = forgotten()
        del coro
        gc.collect()
    assert [] == flushed(sink, "never_awaited")


# ---------------------------------------------------------------------------- debug switch


def test_debug_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """AIOLOG_ASYNCIO_DEBUG=1: loops in debug mode, asyncio logger at DEBUG; then undone."""
    monkeypatch.setenv("AIOLOG_ASYNCIO_DEBUG", "1")
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.setLevel(logging.WARNING)
    aiolog.configure([CaptureSink()])
    assert logging.DEBUG == asyncio_logger.level
    loop = asyncio.new_event_loop()
    try:
        assert loop.get_debug()
    finally:
        loop.close()
    aiolog.shutdown()
    assert logging.WARNING == asyncio_logger.level


@pytest.mark.parametrize(
    ("options", "env"),
    [({"asyncio_slow_callback": 0}, "0"), ({"asyncio_slow_callback": -1.0}, "0"), ({}, "maybe")],
)
def test_bad_debug_settings_raise_before_anything_changes(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], env: str
) -> None:
    """A bad duration or AIOLOG_ASYNCIO_DEBUG value is a ValueError; nothing is installed."""
    monkeypatch.setenv("AIOLOG_ASYNCIO_DEBUG", env)
    with pytest.raises(ValueError):
        aiolog.configure([CaptureSink()], **options)
    assert not asyncio_diag.installed()
    assert aiolog.get_pipeline() is None


def test_resource_warning_is_shown_in_debug_mode() -> None:
    """With asyncio_debug, an unclosed socket's ResourceWarning becomes a record."""
    sink = CaptureSink()
    aiolog.configure([sink], asyncio_debug=True)
    sock = socket.socket()
    line = sys._getframe().f_lineno + 1
    del sock
    gc.collect()
    (record,) = flushed(sink, "resource_warning")
    assert "py.warnings" == record.name
    assert record.getMessage().startswith("unclosed <socket.socket")
    assert f"{__file__}:{line}" == record.warned_at


# ---------------------------------------------------------------------------- install/uninstall


def test_shutdown_undoes_everything(loop_factory: LoopFactory) -> None:
    """After shutdown(): hooks gone, loops' handler and factory restored, filters removed."""
    init = asyncio.BaseEventLoop.__init__
    unawaited = warnings._warn_unawaited_coroutine  # type: ignore[attr-defined]
    set_running = asyncio.events._set_running_loop
    aiolog.configure([CaptureSink()])
    assert asyncio.BaseEventLoop.__init__ is not init
    loop = loop_factory()
    try:
        assert isinstance(loop.get_task_factory(), aiolog._context.TaskFactory)
        assert "default_exception_handler" in vars(loop)
        aiolog.shutdown()
        assert loop.get_task_factory() is None
        assert loop.get_exception_handler() is None
        assert "default_exception_handler" not in vars(loop)
    finally:
        loop.close()
    assert asyncio.BaseEventLoop.__init__ is init
    assert warnings._warn_unawaited_coroutine is unawaited  # type: ignore[attr-defined]
    assert asyncio.events._set_running_loop is set_running
    assert [] == logging.getLogger("asyncio").filters
    assert [] == logging.getLogger("py.warnings").filters
    if "uvloop" in sys.modules:
        assert "run_forever" not in vars(sys.modules["uvloop"].Loop)


def test_reconfigure_applies_new_debug_settings(loop_factory: LoopFactory) -> None:
    """configure() again with debug off puts a live loop back as it was."""
    aiolog.configure([CaptureSink()], asyncio_debug=True)
    loop = loop_factory()
    try:
        assert loop.get_debug()
        aiolog.configure([CaptureSink()], asyncio_debug=False)
        assert not loop.get_debug()
        assert isinstance(loop.get_task_factory(), aiolog._context.TaskFactory)
    finally:
        loop.close()


def test_aiolog_own_loops_are_left_alone() -> None:
    """The listener's loop gets neither the factory nor the handler."""
    pipeline = aiolog.configure([CaptureSink()])
    listener_loop = pipeline.listener._loop  # type: ignore[attr-defined]
    assert listener_loop is not None
    assert not isinstance(listener_loop.get_task_factory(), aiolog._context.TaskFactory)


# ---------------------------------------------------------------------------- formatters


def test_formatters_carry_the_fields(loop_factory: LoopFactory) -> None:
    """JSON and logfmt carry the diagnostic fields; text shows task context compactly."""
    sink = CaptureSink()
    aiolog.configure([sink], asyncio_debug=True, asyncio_slow_callback=0.05)

    async def main() -> None:
        await asyncio.create_task(slow_step(), name="slowpoke")
        task = asyncio.create_task(fail(), name="doomed")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        del task
        gc.collect()

    run(main, loop_factory)
    (slow,) = [r for r in flushed(sink, "slow_callback") if r.taskName == "slowpoke"]
    (lost,) = flushed(sink, "never_retrieved")

    data = json.loads(JSONFormatter().format(slow))
    assert "slowpoke" == data["task"]
    assert "slow_step" == data["coro"]
    assert isinstance(data["duration"], float)
    assert "slow_callback" == data["diagnostic"]
    data = json.loads(JSONFormatter().format(lost))
    assert "KeyError" == data["exception"]["type"]
    assert isinstance(data["source_traceback"], list)
    assert data["future"].startswith("<Task finished")

    line = LogfmtFormatter().format(slow)
    assert "task=slowpoke" in line
    assert "diagnostic=slow_callback" in line
    assert "duration=0.0" in line or "duration=0.1" in line

    text = TextFormatter().format(lost)
    assert "[task=doomed coro=fail" in text
    assert "KeyError: 'lost'" in text


def test_text_shows_a_pitfall_message_on_one_line_and_its_details_below(
    loop_factory: LoopFactory,
) -> None:
    """Text: message and kind on line one, future and frames indented below, then the traceback."""
    sink = CaptureSink()
    aiolog.configure([sink], asyncio_debug=True)

    async def main() -> None:
        task = asyncio.create_task(fail(), name="doomed")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        del task
        gc.collect()

    run(main, loop_factory)
    (lost,) = flushed(sink, "never_retrieved")
    lines = TextFormatter().format(lost).splitlines()

    assert lines[0].endswith(
        "asyncio: Task exception was never retrieved [task=doomed coro=fail] "
        "diagnostic=never_retrieved"
    ), lines[0]
    assert lines[1].startswith("    future: <Task finished name='doomed'"), lines[1]
    frames_at = lines.index("    source_traceback (most recent call last):")
    frames = lines[frames_at + 1 : lines.index("Traceback (most recent call last):")]
    assert len(lost.source_traceback) == len(frames)
    assert all(line.startswith("      ") and " in " in line for line in frames), frames
    assert "KeyError: 'lost'" == lines[-1]


def test_text_pitfall_details_cannot_pass_for_records_of_their_own() -> None:
    """A detail with newlines stays indented; controls are escaped; plain records unchanged."""
    record = logging.makeLogRecord(
        {
            "name": "asyncio",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "Unhandled error",
            "diagnostic": "loop_exception",
            "protocol": "first\n2026-01-01 00:00:00.000 CRITICAL forged\x1b[2J",
            "duration": 0.25,
        }
    )
    formatter = TextFormatter(contextvars=False)
    lines = formatter.format(record).splitlines()
    assert lines[0].endswith("asyncio: Unhandled error diagnostic=loop_exception")
    assert [
        "    protocol: first",
        "      2026-01-01 00:00:00.000 CRITICAL forged\\x1b[2J",
        "    duration: 0.25",
    ] == lines[1:]

    plain = logging.makeLogRecord({"msg": "hi", "levelno": logging.INFO, "protocol": "x y"})
    assert formatter.format(plain).endswith("hi protocol='x y'")
