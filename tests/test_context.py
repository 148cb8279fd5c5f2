"""Who logged: loop callbacks by name, the task behind a to_thread worker, log_about()."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import aiolog
from aiolog import asyncio_diag
from aiolog._context import TaskFactory, callable_name, log_about
from aiolog.testing import CaptureSink
from tests.helpers import LoopFactory, run

logger = logging.getLogger("tests.context")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.fixture
def sink() -> CaptureSink:
    """A capture sink behind a real pipeline made by configure()."""
    capture = CaptureSink()
    aiolog.configure([capture], level="DEBUG")
    return capture


def app_records(sink: CaptureSink) -> list[logging.LogRecord]:
    """The records logged by these tests (not asyncio's own debug chatter)."""
    pipeline = aiolog.get_pipeline()
    assert pipeline is not None
    assert pipeline.flush()
    return [r for r in sink.records if r.name == logger.name]


def run_driven(main: Callable[[], Coroutine[Any, Any, None]], loop_factory: LoopFactory) -> None:
    """Run ``main`` the way applications do: asyncio.Runner, or uvloop.run on 3.10."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main())
    elif "uvloop" in getattr(loop_factory, "__module__", ""):
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def tick(waiter: asyncio.Future[None]) -> None:
    """A loop callback that logs, then wakes the test."""
    logger.info("tick")
    waiter.set_result(None)


def tick_done(waiter: asyncio.Future[None], done: asyncio.Future[int]) -> None:
    """A future's done callback that logs, then wakes the test."""
    logger.info("done %d", done.result())
    waiter.set_result(None)


def schedule(kind: str, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> None:
    """Get ``tick``/``tick_done`` called by the loop in the way ``kind`` names."""
    if kind == "call_soon":
        loop.call_soon(tick, waiter)
    elif kind == "call_later":
        loop.call_later(0, tick, waiter)
    elif kind == "call_at":
        loop.call_at(loop.time(), tick, waiter)
    elif kind == "call_soon_threadsafe":
        thread = threading.Thread(target=loop.call_soon_threadsafe, args=(tick, waiter))
        thread.start()
        thread.join()
    else:
        other: asyncio.Future[int] = loop.create_future()
        other.add_done_callback(functools.partial(tick_done, waiter))
        other.set_result(7)


KINDS = ["call_soon", "call_later", "call_at", "call_soon_threadsafe", "done_callback"]


# ---------------------------------------------------------------------------- callbacks


@pytest.mark.parametrize("kind", KINDS)
def test_record_from_a_callback_names_it(
    sink: CaptureSink, loop_factory: LoopFactory, kind: str
) -> None:
    """A record logged in a loop callback carries its qualified name, and no task."""

    async def main() -> None:
        waiter = asyncio.get_running_loop().create_future()
        schedule(kind, asyncio.get_running_loop(), waiter)
        await waiter

    run(main, loop_factory)
    (record,) = app_records(sink)
    expected = "tick_done" if kind == "done_callback" else "tick"
    assert expected == record.aiolog_callback
    assert record.taskName is None
    assert record.__dict__.get("aiolog_coro") is None


def test_callback_method_and_callable_object_names(
    sink: CaptureSink, loop_factory: LoopFactory
) -> None:
    """Bound methods and callable objects are named by their class."""

    class Pool:
        def reap(self) -> None:
            logger.info("reap")

        def __call__(self) -> None:
            logger.info("call")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = Pool()
        loop.call_soon(pool.reap)
        loop.call_soon(pool)
        await asyncio.sleep(0)

    run(main, loop_factory)
    names = [r.aiolog_callback for r in app_records(sink)]
    qualname = "test_callback_method_and_callable_object_names.<locals>.Pool"
    assert [f"{qualname}.reap", f"{qualname}.__call__"] == names


def test_callback_context_without_aiolog_hooks(
    sink: CaptureSink, loop_factory: LoopFactory
) -> None:
    """Without aiolog's loop hooks, callbacks are still named under Runner / uvloop.run."""
    asyncio_diag.uninstall()

    async def main() -> None:
        waiter = asyncio.get_running_loop().create_future()
        schedule("call_soon", asyncio.get_running_loop(), waiter)
        await waiter

    run_driven(main, loop_factory)
    (record,) = app_records(sink)
    assert "tick" == record.aiolog_callback


def test_uvloop_driven_by_hand_without_hooks_names_no_callback(sink: CaptureSink) -> None:
    """The documented limit: a hand-driven uvloop loop without aiolog's hooks gives None."""
    uvloop = pytest.importorskip("uvloop")
    asyncio_diag.uninstall()

    async def main() -> None:
        waiter = asyncio.get_running_loop().create_future()
        schedule("call_soon", asyncio.get_running_loop(), waiter)
        await waiter

    run(main, uvloop.new_event_loop)
    (record,) = app_records(sink)
    assert record.aiolog_callback is None


def test_record_the_loop_logs_itself_names_no_callback(
    sink: CaptureSink, loop_factory: LoopFactory
) -> None:
    """asyncio's own slow-callback line, logged outside any callback, names none."""
    asyncio_diag.uninstall()  # asyncio's plain record, not aiolog's structured one

    def slow_step() -> None:
        time.sleep(0.02)  # the pitfall itself: a blocking call in a callback

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.01
        waiter = loop.create_future()
        loop.call_soon(slow_step)
        loop.call_soon(waiter.set_result, None)
        await waiter

    run_driven(main, loop_factory)
    pipeline = aiolog.get_pipeline()
    assert pipeline is not None
    assert pipeline.flush()
    (record,) = [r for r in sink.records if "slow_step" in r.getMessage()]
    assert record.aiolog_callback is None


# ---------------------------------------------------------------------------- to_thread


def blocking_work() -> None:
    """What a to_thread worker does: log from a thread with no loop."""
    logger.info("in worker thread")


def test_to_thread_record_names_the_task(sink: CaptureSink, loop_factory: LoopFactory) -> None:
    """A record logged by an asyncio.to_thread worker carries the task that asked for it."""

    async def fetch() -> None:
        request_id.set("r-7")
        await asyncio.to_thread(blocking_work)

    async def main() -> None:
        await asyncio.create_task(fetch(), name="fetch-7")

    run(main, loop_factory)
    (record,) = app_records(sink)
    assert "fetch-7" == record.taskName
    assert "test_to_thread_record_names_the_task.<locals>.fetch" == record.aiolog_coro
    assert "r-7" == record.aiolog_context[request_id]
    assert threading.main_thread().ident != record.thread


def test_to_thread_from_the_main_task_of_asyncio_run(
    sink: CaptureSink, loop_factory: LoopFactory
) -> None:
    """configure() then asyncio.run(main()): main's own to_thread workers name main."""

    async def main() -> None:
        asyncio.current_task().set_name("main-task")  # type: ignore[union-attr]
        await asyncio.to_thread(blocking_work)

    run_driven(main, loop_factory)
    (record,) = app_records(sink)
    assert "main-task" == record.taskName


def test_to_thread_after_configure_inside_the_loop(loop_factory: LoopFactory) -> None:
    """configure() called from inside a running task covers that very task and later ones."""
    sink = CaptureSink()

    async def child() -> None:
        await asyncio.to_thread(blocking_work)

    async def main() -> None:
        asyncio.current_task().set_name("late-main")  # type: ignore[union-attr]
        aiolog.configure([sink])
        await asyncio.to_thread(blocking_work)
        await asyncio.create_task(child(), name="child")

    run(main, loop_factory)
    assert ["late-main", "child"] == [r.taskName for r in app_records(sink)]


def test_user_task_factory_set_before_the_loop_runs_is_wrapped(
    sink: CaptureSink, loop_factory: LoopFactory
) -> None:
    """A task factory the application set is still called, and to_thread is still named."""
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def work() -> None:
        await asyncio.to_thread(blocking_work)

    async def main() -> None:
        await asyncio.create_task(work(), name="worker")

    loop = loop_factory()
    loop.set_task_factory(factory)
    try:
        loop.run_until_complete(main())
        assert isinstance(loop.get_task_factory(), TaskFactory)
    finally:
        loop.close()
    assert "test_user_task_factory_set_before_the_loop_runs_is_wrapped.<locals>.work" in made
    (record,) = app_records(sink)
    assert "worker" == record.taskName


def test_task_names_are_left_alone(sink: CaptureSink, loop_factory: LoopFactory) -> None:
    """Unnamed tasks keep asyncio's Task-N names and given names stay (CPython #130033)."""
    names: list[str] = []

    async def noop() -> None:
        names.append(asyncio.current_task().get_name())  # type: ignore[union-attr]

    async def main() -> None:
        await asyncio.create_task(noop())
        await asyncio.create_task(noop(), name="given")
        await asyncio.get_running_loop().create_task(noop())

    run(main, loop_factory)
    assert names[0].startswith("Task-")
    assert "given" == names[1]
    assert names[2].startswith("Task-")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is 3.11+")
def test_explicit_context_gets_the_origin(sink: CaptureSink, loop_factory: LoopFactory) -> None:
    """create_task(context=...) runs in that context, which names the task as well."""
    ctx = contextvars.copy_context()
    ctx.run(request_id.set, "given-context")

    async def work() -> None:
        await asyncio.to_thread(blocking_work)

    async def main() -> None:
        await asyncio.get_running_loop().create_task(work(), name="ctx-task", context=ctx)

    run(main, loop_factory)
    (record,) = app_records(sink)
    assert "ctx-task" == record.taskName
    assert "given-context" == record.aiolog_context[request_id]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
def test_eager_task_factory_is_wrapped(sink: CaptureSink) -> None:
    """asyncio.eager_task_factory keeps working under aiolog's factory, origin included."""
    go = threading.Event()

    def wait_then_work() -> None:
        go.wait(5)
        blocking_work()

    async def work() -> None:
        await asyncio.to_thread(wait_then_work)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(asyncio.eager_task_factory)
        aiolog.configure([sink])  # wraps the eager factory of the running loop
        task = asyncio.create_task(work(), name="eager")
        go.set()
        await task

    run(main)
    (record,) = app_records(sink)
    assert "eager" == record.taskName


def test_task_source_traceback_is_asyncios_own(sink: CaptureSink) -> None:
    """In debug mode a task's creation traceback ends as without aiolog's factory."""

    async def noop() -> None:
        pass

    async def main() -> list[str]:
        task = asyncio.create_task(noop())
        await task
        return [frame[2] for frame in task._source_traceback[-2:]]  # type: ignore[attr-defined]

    with_factory = run(main)
    asyncio_diag.uninstall()
    assert run(main) == with_factory
    assert "main" == with_factory[0]


# ---------------------------------------------------------------------------- log_about


def test_log_about_a_task_names_it_not_the_caller(
    sink: CaptureSink, loop_factory: LoopFactory
) -> None:
    """log_about() names the subject task, even when another task is running."""

    async def subject() -> None:
        request_id.set("subject-ctx")
        await asyncio.sleep(0)

    async def main() -> None:
        task = asyncio.create_task(subject(), name="subject")
        await task
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "about", (), None)
        log_about(logger, record, task=task, context=task_context(task))
        assert asyncio.current_task() is not task

    run(main, loop_factory)
    (record,) = app_records(sink)
    assert "subject" == record.taskName
    assert "test_log_about_a_task_names_it_not_the_caller.<locals>.subject" == record.aiolog_coro
    if sys.version_info >= (3, 12):
        assert "subject-ctx" == record.aiolog_context[request_id]


def task_context(task: asyncio.Task[Any]) -> contextvars.Context | None:
    """The task's context where Python hands it out (3.12+)."""
    get_context = getattr(task, "get_context", None)
    return get_context() if get_context is not None else None


def test_log_about_a_callback_from_a_task(sink: CaptureSink, loop_factory: LoopFactory) -> None:
    """log_about(callback=...) names the callback and no task."""

    async def main() -> None:
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "about", (), None)
        log_about(logger, record, callback="Pool.reap")

    run(main, loop_factory)
    (record,) = app_records(sink)
    assert "Pool.reap" == record.aiolog_callback
    assert record.taskName is None


def test_log_about_a_task_off_the_loop(sink: CaptureSink) -> None:
    """With no loop on the thread, the subject task is still named (via ORIGIN_TASK)."""

    async def subject() -> None:
        pass

    async def main() -> asyncio.Task[None]:
        task = asyncio.create_task(subject(), name="far")
        await task
        return task

    task = run(main)
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "about", (), None)
    log_about(logger, record, task=task)
    (got,) = app_records(sink)
    assert "far" == got.taskName
    assert "test_log_about_a_task_off_the_loop.<locals>.subject" == got.aiolog_coro


# ---------------------------------------------------------------------------- callable_name


def plain() -> None:
    """A module-level function."""


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (plain, "plain"),
        (functools.partial(functools.partial(plain)), "plain"),
        (CaptureSink().write, "CaptureSink.write"),
        (CaptureSink, "CaptureSink"),
        (print, "print"),
        (42, None),
    ],
)
def test_callable_name(fn: object, expected: str | None) -> None:
    """Functions, nested partials, methods, classes, builtins; non-callables give None."""
    assert expected == callable_name(fn)


def test_callable_object_name() -> None:
    """An object with __call__ is named after its class."""

    class Reaper:
        def __call__(self) -> None:
            pass

    assert "test_callable_object_name.<locals>.Reaper.__call__" == callable_name(Reaper())
