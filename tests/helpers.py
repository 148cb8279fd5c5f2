"""Helpers shared by the tests: the event loops to run on, and a small ``asyncio.run``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

__all__ = ["LOOP_FACTORIES", "LoopFactory", "run"]

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _loop_factories() -> list[Any]:
    factories = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # not installed, or Windows
        pass
    else:
        factories.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return factories


#: ``pytest.param`` entries for ``asyncio.new_event_loop`` and, where importable,
#: ``uvloop.new_event_loop``: ``@pytest.mark.parametrize("loop_factory", LOOP_FACTORIES)``.
#: The ``loop_factory`` fixture in ``conftest.py`` is parametrized with the same list.
LOOP_FACTORIES: list[Any] = _loop_factories()


def run(
    coro_fn: Callable[[], Coroutine[Any, Any, T]] | Coroutine[Any, Any, T],
    loop_factory: LoopFactory = asyncio.new_event_loop,
    debug: bool = True,
) -> T:
    """Run a coroutine to completion on a new loop from *loop_factory*, like ``asyncio.run``.

    *coro_fn* is a coroutine function called with no arguments (or a coroutine object).
    The loop runs in debug mode by default. Afterwards, leftover tasks are cancelled, async
    generators and the default executor are shut down, and the loop is closed.
    """
    loop = loop_factory()
    try:
        loop.set_debug(debug)
        coro = coro_fn if isinstance(coro_fn, Coroutine) else coro_fn()
        return loop.run_until_complete(coro)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the test left running and report errors, as ``asyncio.run`` does."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during test loop shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )


class SignalsErrors:
    """Mixin for a network sink: sets :attr:`failed` at each error it counts.

    ``class Probe(SignalsErrors, TcpSink): ...`` lets a test wait for the first failure
    (``probe.failed.wait(10)``) instead of sleeping.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed = threading.Event()

    def note_error(self, error: BaseException | str) -> None:
        super().note_error(error)  # type: ignore[misc]
        self.failed.set()
